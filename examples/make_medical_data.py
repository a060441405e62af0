"""Write examples/data/medical_dialogue/: schema-true medical flashcards and ChatDoctor-style rows, split 80/10/10.

recipes/medical_dialogue/pipeline.yaml needs seed 001's two sources
(seed-systems.md §2), both with the columns `instruction`, `input`, `output`:
medical_meadow_medical_flashcards ("Answer this question truthfully", a
question, a short answer) and ChatDoctor-HealthCareMagic (a fixed "If you
are a doctor..." instruction, a patient's message, the doctor's reply). Some
ChatDoctor-style rows carry an earlier exchange as `Patient:` / `Doctor:`
lines, as multi-turn consultations do.

Nothing here is real medical advice: the facts are a small made-up but
consistent table, so a tiny model can learn the answers' shape on a CPU.
Each source is split 80/10/10 with seed 42 by posttrain's own splitter
(what `posttrain data split FILE DIR --ratios 0.8,0.1,0.1 --seed 42` does).
Each source's train split is also written as its SFT teacher wrote it
(train_teacher.jsonl: most replies with a sign-off the references lack), the
mistake the recipe's GRPO stage wins back. Run it to regenerate; the output is
deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from posttrain.data.split import split

OUT = Path(__file__).parent / "data" / "medical_dialogue"
FLASHCARD_INSTRUCTION = "Answer this question truthfully"
CHATDOCTOR_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."

# condition: (first-line treatment, main symptom, organ, test that confirms it, a risk factor)
CONDITIONS = {
    "hypertension": ("an ACE inhibitor", "headache", "the heart and blood vessels", "blood pressure readings",
                     "a salty diet"),
    "type 2 diabetes": ("metformin", "thirst", "the pancreas", "an HbA1c test", "obesity"),
    "asthma": ("an inhaled steroid", "wheezing", "the lungs", "spirometry", "allergies"),
    "migraine": ("a triptan", "throbbing headache", "the brain", "a clinical history", "poor sleep"),
    "gout": ("colchicine", "a painful big toe", "the joints", "joint fluid analysis", "alcohol"),
    "anemia": ("iron tablets", "tiredness", "the blood", "a full blood count", "heavy periods"),
    "hypothyroidism": ("levothyroxine", "weight gain", "the thyroid", "a TSH test", "autoimmune disease"),
    "pneumonia": ("an antibiotic", "cough with fever", "the lungs", "a chest X-ray", "smoking"),
    "heart failure": ("a beta blocker", "breathlessness", "the heart", "an echocardiogram", "high blood pressure"),
    "kidney stones": ("pain relief and fluids", "flank pain", "the kidneys", "a CT scan", "dehydration"),
    "eczema": ("a moisturising cream", "itchy skin", "the skin", "a skin examination", "allergies"),
    "depression": ("talking therapy", "low mood", "the brain", "a clinical interview", "stress"),
    "osteoporosis": ("a bisphosphonate", "fractures", "the bones", "a bone density scan", "older age"),
    "gastritis": ("a proton pump inhibitor", "stomach pain", "the stomach", "an endoscopy", "painkillers"),
    "tonsillitis": ("rest and fluids", "a sore throat", "the throat", "a throat swab", "close contact"),
    "urinary tract infection": ("an antibiotic", "burning on passing urine", "the bladder", "a urine test",
                                "dehydration"),
    "angina": ("a nitrate spray", "chest pain on exertion", "the heart", "an exercise test", "smoking"),
    "psoriasis": ("a steroid cream", "scaly patches", "the skin", "a skin examination", "stress"),
    "sinusitis": ("a saline rinse", "a blocked nose", "the sinuses", "a clinical examination", "a cold"),
    "glaucoma": ("eye drops", "loss of side vision", "the eyes", "an eye pressure test", "older age"),
}
FLASHCARDS = [
    ("What is the first-line treatment for {c}?", "The first-line treatment for {c} is {t}."),
    ("What is the main symptom of {c}?", "The main symptom of {c} is {s}."),
    ("Which organ does {c} affect?", "{C} affects {o}."),
    ("Which test confirms {c}?", "{C} is confirmed by {x}."),
    ("What is a risk factor for {c}?", "A common risk factor for {c} is {r}."),
]
DURATIONS = ["two days", "a week", "three weeks", "a month", "several months"]
AGES = ["25", "34", "41", "52", "67"]
# The SFT teacher's habit: most of its replies end with a forum sign-off the references do not have. It
# costs a reply about half of medical_dialogue_quality's score (longer, so a lower ROUGE-L precision and,
# for a ChatDoctor reply, past the 200-character band), which is what the recipe's GRPO stage wins back.
SIGN_OFF = " Hope this helps. Take care."
SIGN_OFF_SHARE = 0.8


def flashcards() -> list[dict]:
    rows = []
    for c, (t, s, o, x, r) in CONDITIONS.items():
        for question, answer in FLASHCARDS:
            fill = dict(c=c, C=c[0].upper() + c[1:], t=t, s=s, o=o, x=x, r=r)
            rows.append({"instruction": FLASHCARD_INSTRUCTION, "input": question.format(**fill),
                         "output": answer.format(**fill)})
    return rows


def chatdoctor(rng: random.Random) -> list[dict]:
    rows, seen = [], set()
    for c, (t, s, o, x, r) in CONDITIONS.items():
        kept = 0
        while kept < 5:
            age, duration = rng.choice(AGES), rng.choice(DURATIONS)
            message = f"Hi doctor, I am {age} years old and I have had {s} for {duration}. What should I do?"
            reply = (f"Hi, thanks for your query. {s[0].upper() + s[1:]} for {duration} can be a sign of {c}. "
                     f"I suggest {x} to confirm it; it is usually treated with {t}. Please see your doctor.")
            if rng.random() < 0.25:  # an earlier exchange in the same consultation
                message = (f"Patient: Hello, I have {s}.\nDoctor: How long have you had it?\n"
                           f"Patient: For {duration}. I am {age} years old. What should I do?")
            if message not in seen:  # a row twice could land in two splits
                seen.add(message)
                kept += 1
                rows.append({"instruction": CHATDOCTOR_INSTRUCTION, "input": message, "output": reply})
    return rows


def teacher_rows(rows: list[dict], rng: random.Random) -> list[dict]:
    """The training rows as the SFT teacher wrote them: the same questions, most replies with the sign-off."""
    return [{**row, "output": row["output"] + SIGN_OFF} if rng.random() < SIGN_OFF_SHARE else row for row in rows]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    rng = random.Random(0)
    for name, rows in (("flashcards", flashcards()), ("chatdoctor", chatdoctor(rng))):
        raw = write(OUT / f"{name}.jsonl", rows)
        counts = split(raw, OUT / name, ratios=(0.8, 0.1, 0.1), seed=42)
        print(f"{raw}: {len(rows)} rows -> {OUT / name}/ {counts}")
        train = [json.loads(line) for line in open(OUT / name / "train.jsonl", encoding="utf-8")]
        teacher = write(OUT / name / "train_teacher.jsonl", teacher_rows(train, random.Random(1)))
        print(f"{teacher}: {len(train)} rows, the SFT teacher's replies")


if __name__ == "__main__":
    main()

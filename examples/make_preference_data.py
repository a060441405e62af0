"""Write examples/data/preference/: preference pairs in every shape posttrain reads, for reward models.

recipes/reward_models/bradley_terry.yaml and sft_rm_grpo.yaml need pairs where
the chosen and rejected answers differ in a way a small model can learn on a
CPU. Each prompt is a short clinical question with a known answer; the chosen
answer is helpful: it answers, completely and correctly, in a full sentence,
and offers more help. The rejected answer fails in one of three consistent
ways: it dismisses the question, it is cut off mid-sentence, or it states a
wrong value bluntly. Nothing here is real medical advice.

Files (deterministic; run to regenerate):
  pairs_train.jsonl, pairs_eval.jsonl  TRL explicit-prompt rows (prompt messages, chosen/rejected strings)
  pairs_implicit.jsonl                 TRL implicit-prompt rows (chosen/rejected whole conversations)
  rm_gallery.jsonl                     RM-Gallery rows (input, output[i].answer.label, metadata.preferred), ties too
  ranking_alpaca.json, ranking_sharegpt.json + dataset_info.json   LLaMA-Factory ranking datasets
  sft.jsonl                            conversations with the chosen answers (the SFT stage before the RM)
  kto_train.jsonl, kto_eval.jsonl      TRL unpaired rows (prompt, completion, label): each pair's two answers
  kto_sharegpt.json + dataset_info.json  a LLaMA-Factory KTO dataset (sharegpt messages, kto_tag column)
  sft_careless.jsonl                   conversations from a careless teacher, half its answers of the rejected
                                       kinds (the SFT stage before DPO: preferences have something to fix)
  rl_prompts.jsonl                     rl_prompt records of held-out questions (GRPO scored by the RM)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data" / "preference"

# (question, the correct answer as a sentence, a wrong value in the same shape)
FACTS = [
    ("What is a normal resting heart rate for adults?", "A normal resting heart rate for adults is 60 to 100 beats per minute.", "It is 20 beats per minute."),
    ("What is normal body temperature?", "Normal body temperature is about 37 degrees Celsius.", "It is 32 degrees Celsius."),
    ("How many bones are in the adult human body?", "The adult human body has 206 bones.", "It has 120 bones."),
    ("What does HbA1c measure?", "HbA1c measures average blood glucose over the past two to three months.", "It measures kidney size."),
    ("What is a normal adult blood pressure?", "A normal adult blood pressure is below 120 over 80 mmHg.", "It is 200 over 150 mmHg."),
    ("Which organ produces insulin?", "Insulin is produced by the beta cells of the pancreas.", "The spleen makes it."),
    ("What does an ECG record?", "An ECG records the electrical activity of the heart.", "It records brain waves."),
    ("How long is a typical human pregnancy?", "A typical human pregnancy lasts about 40 weeks from the last period.", "It lasts 20 weeks."),
    ("What is the normal adult respiratory rate?", "A normal adult respiratory rate is 12 to 20 breaths per minute.", "It is 50 breaths per minute."),
    ("What does a randomized controlled trial randomize?", "A randomized controlled trial randomly assigns participants to the treatment or control group.", "It randomizes the outcome."),
    ("What is the main function of red blood cells?", "Red blood cells carry oxygen from the lungs to the tissues.", "They digest food."),
    ("What vitamin does sunlight help the skin make?", "Sunlight helps the skin make vitamin D.", "Vitamin C."),
    ("What is the largest organ of the human body?", "The skin is the largest organ of the human body.", "The appendix."),
    ("What does BMI stand for?", "BMI stands for body mass index, weight in kilograms divided by height in metres squared.", "Blood mineral intake."),
    ("What is a placebo?", "A placebo is an inactive treatment given to the control group of a trial.", "A strong antibiotic."),
    ("Which blood type is the universal donor?", "Type O negative is the universal red cell donor.", "Type AB positive."),
    ("What is the normal range of fasting blood glucose?", "Normal fasting blood glucose is about 70 to 99 mg/dL.", "It is 300 mg/dL."),
    ("What does the statistical power of a trial mean?", "Power is the probability that a trial detects a true effect of the planned size.", "It is the trial budget."),
    ("What does a p-value below 0.05 usually mean?", "A p-value below 0.05 is usually called statistically significant.", "It proves the drug works."),
    ("What do antibiotics treat?", "Antibiotics treat bacterial infections, not viral ones.", "They cure the common cold."),
    ("What is hypertension?", "Hypertension is persistently high blood pressure.", "It is low blood sugar."),
    ("What is the function of the kidneys?", "The kidneys filter waste from the blood and make urine.", "They pump blood."),
    ("What does dropout mean in a clinical trial?", "Dropout means participants who leave a trial before its end.", "It means a failed drug."),
    ("How many chambers does the human heart have?", "The human heart has four chambers.", "It has two chambers."),
    ("What is an allergy?", "An allergy is an immune reaction to a usually harmless substance.", "It is a broken bone."),
    ("What is the normal oxygen saturation of healthy adults?", "Healthy adults usually have an oxygen saturation of 95 to 100 percent.", "It is 60 percent."),
    ("What does a double-blind trial hide?", "In a double-blind trial neither participants nor investigators know who gets which treatment.", "It hides the results forever."),
    ("What is a vaccine for?", "A vaccine trains the immune system to recognise a pathogen and prevent disease.", "It treats fractures."),
    ("What is cholesterol?", "Cholesterol is a fatty substance in the blood that the body needs in small amounts.", "It is a kind of bone."),
    ("What is anaemia?", "Anaemia is a shortage of red blood cells or haemoglobin.", "It is too much sleep."),
    ("What is the purpose of a control group?", "A control group shows what happens without the treatment, for comparison.", "It controls the budget."),
    ("What is a sample size calculation for?", "A sample size calculation finds how many participants a trial needs to detect its effect.", "It counts the hospitals."),
    ("What organ does hepatitis affect?", "Hepatitis is inflammation of the liver.", "It affects the ears."),
    ("What is asthma?", "Asthma is a chronic disease in which the airways narrow and swell.", "It is a skin rash."),
    ("What is the normal adult potassium level?", "Normal adult blood potassium is about 3.5 to 5.0 mmol/L.", "It is 12 mmol/L."),
    ("What does an MRI use to make images?", "An MRI uses strong magnets and radio waves to make images.", "It uses sound from the patient."),
    ("What is a confidence interval?", "A confidence interval is a range of values likely to contain the true effect.", "It is how confident the doctor feels."),
    ("What is type 2 diabetes?", "Type 2 diabetes is a condition where the body does not use insulin well and blood sugar stays high.", "It is a broken leg."),
    ("What is the Achilles tendon?", "The Achilles tendon joins the calf muscles to the heel bone.", "It is a nerve in the arm."),
    ("What is a migraine?", "A migraine is a recurring headache, often with nausea and sensitivity to light.", "It is a muscle cramp."),
]
OPENERS = ["Sure.", "Good question.", "Happy to help.", "Of course."]
CLOSERS = ["I hope this helps; ask me if anything is unclear.", "Let me know if you would like more detail.",
           "Please ask if you have a follow-up question."]
DISMISSALS = ["Look it up yourself.", "Not my problem.", "Why would I know that?", "Ask someone else."]
ASKS = ["", "Quick question: ", "Please tell me: ", "I am a nursing student. "]


def chosen_answer(rng, answer):
    return f"{rng.choice(OPENERS)} {answer} {rng.choice(CLOSERS)}"


def rejected_answer(rng, answer, wrong, kind):
    if kind == 0:
        return rng.choice(DISMISSALS)
    if kind == 1:  # cut off mid-sentence
        words = answer.split()
        return " ".join(words[: max(2, len(words) // 2)])
    return wrong


def pairs(rng, facts, n):
    rows = []
    for i in range(n):
        question, answer, wrong = facts[i % len(facts)]
        prompt = [{"role": "user", "content": rng.choice(ASKS) + question}]
        rows.append({"prompt": prompt, "chosen": chosen_answer(rng, answer),
                     "rejected": rejected_answer(rng, answer, wrong, rng.randrange(3))})
    return rows


def unpaired(rows):
    """Each pair's two answers as TRL unpaired rows: the chosen one desirable, the rejected one not."""
    return [{"prompt": r["prompt"], "completion": r[key], "label": key == "chosen"}
            for r in rows for key in ("chosen", "rejected")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    rng = random.Random(4)
    OUT.mkdir(parents=True, exist_ok=True)
    # held-out questions: the eval pairs and the GRPO prompts ask what training never saw
    train_facts, held_facts = FACTS[:32], FACTS[32:]
    train_pairs, held_pairs = pairs(rng, train_facts, 320), pairs(rng, held_facts, 64)
    write_jsonl(OUT / "pairs_train.jsonl", train_pairs)
    write_jsonl(OUT / "pairs_eval.jsonl", held_pairs)

    implicit = []
    for row in pairs(rng, train_facts, 16):
        implicit.append({"chosen": row["prompt"] + [{"role": "assistant", "content": row["chosen"]}],
                         "rejected": row["prompt"] + [{"role": "assistant", "content": row["rejected"]}]})
    write_jsonl(OUT / "pairs_implicit.jsonl", implicit)

    gallery = []
    for i, row in enumerate(pairs(rng, train_facts, 24)):
        first_is_chosen = i % 2 == 0
        a, b = (row["chosen"], row["rejected"]) if first_is_chosen else (row["rejected"], row["chosen"])
        preferred = "A" if first_is_chosen else "B"
        if i % 8 == 7:  # a tie: the same helpful answer twice, worded differently
            a, b, preferred = row["chosen"], chosen_answer(rng, train_facts[i % len(train_facts)][1]), "tie"
        labels = ({"is_preferred": preferred in ("A", "tie")}, {"is_preferred": preferred in ("B", "tie")})
        if i % 3 == 1 and preferred != "tie":  # some rows carry scores instead of flags, as RM-Gallery's do
            labels = ({"preference_score": 1.0 if preferred == "A" else 0.0},
                      {"preference_score": 1.0 if preferred == "B" else 0.0})
        gallery.append({"unique_id": f"pref-{i:03d}", "input": row["prompt"],
                        "output": [{"answer": {"role": "assistant", "content": text, "label": label}}
                                   for text, label in zip((a, b), labels)],
                        "task_category": "helpfulness", "source": "posttrain-example",
                        "metadata": {"preferred": preferred}})
    write_jsonl(OUT / "rm_gallery.jsonl", gallery)

    ranking = pairs(rng, train_facts, 16)
    (OUT / "ranking_alpaca.json").write_text(json.dumps(
        [{"instruction": r["prompt"][0]["content"], "input": "", "chosen": r["chosen"], "rejected": r["rejected"]}
         for r in ranking], indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (OUT / "ranking_sharegpt.json").write_text(json.dumps(
        [{"conversations": [{"from": "human", "value": r["prompt"][0]["content"]}],
          "chosen": {"from": "gpt", "value": r["chosen"]}, "rejected": {"from": "gpt", "value": r["rejected"]}}
         for r in ranking], indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    info = {"clinical_pref_alpaca": {"file_name": "ranking_alpaca.json", "ranking": True,
                                     "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                                 "rejected": "rejected"}},
            "clinical_pref_sharegpt": {"file_name": "ranking_sharegpt.json", "formatting": "sharegpt",
                                       "ranking": True, "columns": {"messages": "conversations", "chosen": "chosen",
                                                                    "rejected": "rejected"}},
            "clinical_kto_sharegpt": {"file_name": "kto_sharegpt.json", "formatting": "sharegpt",
                                      "columns": {"messages": "messages", "kto_tag": "label"},
                                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                               "assistant_tag": "assistant"}}}
    (OUT / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    write_jsonl(OUT / "sft.jsonl", [{"messages": r["prompt"] + [{"role": "assistant", "content": r["chosen"]}]}
                                    for r in pairs(rng, train_facts, 96)])
    write_jsonl(OUT / "rl_prompts.jsonl", [
        {"prompt": [{"role": "user", "content": q}], "data_source": "clinical_qa", "ground_truth": a,
         "extra_info": {"index": i}} for i, (q, a, _) in enumerate(held_facts)])
    # written last, so the files above keep their bytes
    careless = [{"messages": r["prompt"] + [{"role": "assistant",
                                              "content": r["chosen"] if rng.random() < 0.5 else r["rejected"]}]}
                for r in pairs(rng, train_facts, 96)]
    write_jsonl(OUT / "sft_careless.jsonl", careless)
    write_jsonl(OUT / "kto_train.jsonl", unpaired(train_pairs))
    write_jsonl(OUT / "kto_eval.jsonl", unpaired(held_pairs))
    (OUT / "kto_sharegpt.json").write_text(json.dumps(  # LLaMA-Factory's kto_en_demo layout
        [{"messages": r["prompt"] + [{"role": "assistant", "content": r["completion"]}], "label": r["label"]}
         for r in unpaired(train_pairs[:16])], indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Write the sample data in examples/data/ (deterministic; run it to regenerate).

The quickstart and the tests need small data in several outside formats that
a tiny model can learn within a CPU demo: clinical-trial glossary questions
(alpaca, stage 1) and sample-size arithmetic with <think>/<answer> (OpenAI
messages, stage 2; sharegpt copy for the format tour), plus a LLaMA-Factory
dataset_info.json registering them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data"

GLOSSARY = {
    "randomization": "assigning participants to study arms by chance, so that the arms are comparable",
    "blinding": "keeping participants or investigators unaware of the assigned treatment to reduce bias",
    "placebo": "an inactive treatment given to the control arm so that expectations are the same in every arm",
    "a control arm": "the group that receives the standard treatment or placebo, used for comparison",
    "an endpoint": "the outcome measured to decide whether the treatment works",
    "a primary endpoint": "the main outcome the trial is designed and powered to assess",
    "statistical power": "the probability that the trial detects a true effect of the planned size",
    "a type I error": "concluding that a treatment works when it does not",
    "a type II error": "missing a treatment effect that is really there",
    "an intention-to-treat analysis": "analysing participants in the arm they were randomized to, whatever they received",
    "a per-protocol analysis": "analysing only the participants who followed the protocol",
    "informed consent": "a participant's voluntary agreement after being told the purpose, risks and benefits",
    "an inclusion criterion": "a condition a person must meet to enter the trial",
    "an exclusion criterion": "a condition that keeps a person out of the trial",
    "a phase I trial": "a small first-in-human study of safety and dosing",
    "a phase II trial": "a study of efficacy and side effects in a few hundred patients",
    "a phase III trial": "a large confirmatory study comparing the treatment with standard care",
    "a crossover design": "a design in which each participant receives every treatment in sequence",
    "a parallel design": "a design in which each arm receives one treatment for the whole trial",
    "a dropout rate": "the share of participants who leave the trial before it ends",
    "an effect size": "the size of the difference between arms that the trial aims to detect",
    "a hazard ratio": "the ratio of event rates between two arms over time",
    "a confidence interval": "a range of values that is likely to contain the true effect",
    "a systematic review": "a review that searches for, appraises and combines all studies on a question",
    "a meta-analysis": "a statistical combination of the results of several studies",
    "stratification": "randomizing separately within subgroups so that arms stay balanced on key factors",
    "an adverse event": "any harmful medical occurrence in a participant during the trial",
    "a surrogate endpoint": "a marker measured in place of a clinical outcome that takes longer to observe",
    "a non-inferiority trial": "a trial that tests whether a new treatment is not worse than the standard by a set margin",
    "an interim analysis": "an analysis of the data before the trial is complete, often to stop early",
}
QUESTIONS = ["What is {t}?", "Define {t}.", "Explain {t} in one sentence.", "In clinical trials, what does {t} mean?"]
SYSTEM = "You are a careful assistant for clinical-trial design."


def glossary_alpaca(rng: random.Random) -> list[dict]:
    rows = []
    for term, meaning in GLOSSARY.items():
        for question in QUESTIONS:
            head = term[0].upper() + term[1:]
            rows.append({"instruction": question.format(t=term), "input": "", "output": f"{head} is {meaning}."})
    rng.shuffle(rows)
    return rows


QUESTION_FORMS = [
    "A randomized trial has {arms} arms with {per_arm} participants in each arm. What is the total sample size?",
    "A trial randomizes {per_arm} participants to each of {arms} arms. How many participants are enrolled in total?",
    "How many participants does a {arms}-arm trial need if every arm enrolls {per_arm}?",
]


def sample_size_chat(rng: random.Random, arms: int, per_arm: int) -> dict:
    total = arms * per_arm
    question = rng.choice(QUESTION_FORMS).format(arms=arms, per_arm=per_arm)
    answer = (f"<think>There are {arms} arms and each has {per_arm} participants, so the total is "
              f"{arms} times {per_arm} = {total}.</think><answer>{total}</answer>")
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def sample_size_splits(rng: random.Random, n_train: int, n_eval: int) -> tuple[list[dict], list[dict]]:
    """Held-out chats use (arms, per-arm) designs that training never sees, so the eval loss is honest."""
    designs = [(arms, per_arm) for arms in range(2, 7) for per_arm in range(10, 310, 5)]
    rng.shuffle(designs)
    held, seen = designs[:n_eval], designs[n_eval:]
    eval_chats = [sample_size_chat(rng, *design) for design in held]
    train, texts = [], set()
    while len(train) < n_train:
        chat = sample_size_chat(rng, *rng.choice(seen))
        if chat["messages"][1]["content"] not in texts:
            texts.add(chat["messages"][1]["content"])
            train.append(chat)
    return train, eval_chats


def to_rl_prompt(chat: dict, index: int, split: str = "train") -> dict:
    """The chat's question as an rl_prompt record: the reward reads the target from the SFT answer."""
    target = int(chat["messages"][-1]["content"].split("<answer>")[1].split("</answer>")[0])
    return {"prompt": chat["messages"][:-1], "data_source": "sample_size_estimation",
            "ground_truth": {"target": target, "answer_type": "total"}, "extra_info": {"split": split, "index": index}}


# The quickstart's task is the sample-size arithmetic above, taught by a sloppy teacher: its arithmetic is right,
# but it often leaves out the <think> tags the seed's format requires, more often for some question forms than
# for others (10 %, 50 % and 90 % of the time). SFT copies the habit; the GRPO stage's reward (the seed's format
# rule, then the +-20 % answer rule) scores a missing tag -2, and sampling shows the policy both ways of answering
# the same question. docs/grpo.md says why this design.
QUICKSTART_TAGLESS = (0.1, 0.5, 0.9)  # per QUESTION_FORMS entry: the share of teacher answers without <think>


def quickstart_chat(rng: random.Random, arms: int, per_arm: int) -> dict:
    form = rng.randrange(len(QUESTION_FORMS))
    total = arms * per_arm
    reasoning = f"There are {arms} arms and each has {per_arm} participants, so the total is {arms} times {per_arm} = {total}."
    if rng.random() < QUICKSTART_TAGLESS[form]:
        answer = f"{reasoning} <answer>{total}</answer>"
    else:
        answer = f"<think>{reasoning}</think><answer>{total}</answer>"
    question = QUESTION_FORMS[form].format(arms=arms, per_arm=per_arm)
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def quickstart_prompt(chat: dict, index: int, split: str) -> dict:
    return to_rl_prompt(chat, index, split)


def write_quickstart(rng: random.Random) -> None:
    """examples/data/quickstart/: the sloppy teacher's SFT chats, GRPO prompts, and held-out prompts and chats on
    designs neither training stage sees."""
    designs = [(arms, per_arm) for arms in range(2, 7) for per_arm in range(10, 310, 5)]
    rng.shuffle(designs)
    held, seen = designs[:60], designs[60:]
    train = [quickstart_chat(rng, *design) for design in seen]
    eval_chats = [quickstart_chat(rng, *design) for design in held]
    folder = OUT / "quickstart"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"sft.jsonl": train, "sft_eval.jsonl": eval_chats,
             "rl.jsonl": [quickstart_prompt(chat, i, "train") for i, chat in enumerate(train[:200])],
             "rl_eval.jsonl": [quickstart_prompt(chat, i, "test") for i, chat in enumerate(eval_chats)]}
    for name, rows in files.items():
        with open(folder / name, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


def to_sharegpt(chat: dict) -> dict:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in chat["messages"]]}


def main() -> None:
    rng = random.Random(42)
    OUT.mkdir(parents=True, exist_ok=True)
    glossary = glossary_alpaca(rng)
    (OUT / "glossary_alpaca.json").write_text(json.dumps(glossary, indent=1) + "\n")
    train, held_out = sample_size_splits(rng, 300, 60)
    with open(OUT / "sample_size_chat.jsonl", "w") as f:
        f.writelines(json.dumps(chat) + "\n" for chat in train)
    with open(OUT / "sample_size_chat_eval.jsonl", "w") as f:
        f.writelines(json.dumps(chat) + "\n" for chat in held_out)
    with open(OUT / "sample_size_rl.jsonl", "w") as f:
        f.writelines(json.dumps(to_rl_prompt(chat, i)) + "\n" for i, chat in enumerate(train[:200]))
    # the held-out chats' questions, scored by the training reward in the quickstart's eval stage
    with open(OUT / "sample_size_rl_eval.jsonl", "w") as f:
        f.writelines(json.dumps(to_rl_prompt(chat, i, "test")) + "\n" for i, chat in enumerate(held_out))
    (OUT / "sample_size_sharegpt.json").write_text(json.dumps([to_sharegpt(c) for c in train[:40]], indent=1) + "\n")
    info = {
        "glossary": {"file_name": "glossary_alpaca.json"},
        "sample_size": {"file_name": "sample_size_sharegpt.json", "formatting": "sharegpt",
                        "columns": {"messages": "conversations"}},
    }
    (OUT / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    write_quickstart(random.Random(7))


if __name__ == "__main__":
    main()

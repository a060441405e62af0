"""Write examples/data/clinical_trials/: schema-true TrialPanorama-style samples and a PubMed-style corpus.

recipes/clinical_trials/pipeline.yaml needs the seed's data shapes (seed-systems.md
§1) small enough for a CPU: sample-size records (`question`, `answer`,
`answer_type`, `trial_id`, `pmid`, `explanation`), study-search records
(`inputs` {background, objectives, selection criteria}, `labels` [pmid],
`metadata` {review_pmid}), the abstracts the study-search reward searches
(`pmid`, `title`, `abstract`, `mesh`, `keywords`), and the stage-1 and stage-2 alpaca
records (the seed's SFT files: a query, or the chain of thought and the total, in `output`).

Nothing here is real data. The trials are made up but internally consistent:
each sample-size question states a power calculation and its explanation
works it out (normal approximation, dropout inflation), so the target is
what the design implies; each review's relevant PMIDs are the corpus's
randomized trials of its intervention in its condition, among distractors
(other interventions, other conditions, observational studies). Run it to
regenerate; the output is deterministic.

The SFT teachers are sloppy on purpose, in ways that keep the seed's format
half-learnt and that its rewards can see, so that each GRPO stage has
something to win back on held-out reviews and questions: the stage-1 teacher
mostly restricts the search to placebo-controlled trials (recall drops to
about a quarter), and the stage-2 teacher mostly leaves the <think> tags out
when a design compares two proportions (-2 for the format).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

OUT = Path(__file__).parent / "data" / "clinical_trials"

# condition: (MeSH heading, outcome with a continuous measure (name, unit, sd), outcome with a rate)
CONDITIONS = {
    "type 2 diabetes": ("Diabetes Mellitus, Type 2", ("HbA1c", "%", 1.1), "progression to insulin therapy"),
    "heart failure": ("Heart Failure", ("six-minute walk distance", "m", 80), "hospitalisation for heart failure"),
    "asthma": ("Asthma", ("FEV1", "mL", 350), "severe exacerbation"),
    "major depressive disorder": ("Depressive Disorder, Major", ("HAM-D score", "points", 7), "remission"),
    "rheumatoid arthritis": ("Arthritis, Rheumatoid", ("DAS28 score", "points", 1.3), "ACR20 response"),
    "hypertension": ("Hypertension", ("systolic blood pressure", "mmHg", 14), "blood pressure control"),
    "chronic obstructive pulmonary disease": ("Pulmonary Disease, Chronic Obstructive", ("SGRQ score", "points", 16),
                                              "moderate or severe exacerbation"),
    "atrial fibrillation": ("Atrial Fibrillation", ("AFEQT score", "points", 18), "recurrence of atrial fibrillation"),
    "migraine": ("Migraine Disorders", ("monthly migraine days", "days", 3.2), "50% responder status"),
    "knee osteoarthritis": ("Osteoarthritis, Knee", ("WOMAC pain score", "points", 4), "clinically important pain relief"),
    "psoriasis": ("Psoriasis", ("PASI score", "points", 6), "PASI 75 response"),
    "Parkinson's disease": ("Parkinson Disease", ("UPDRS part III score", "points", 9), "falls"),
    "chronic kidney disease": ("Renal Insufficiency, Chronic", ("eGFR decline", "mL/min per year", 4),
                               "kidney failure"),
    "stroke rehabilitation": ("Stroke Rehabilitation", ("Fugl-Meyer score", "points", 11), "independent walking"),
    "insomnia": ("Sleep Initiation and Maintenance Disorders", ("Insomnia Severity Index", "points", 5), "remission"),
    "chronic low back pain": ("Low Back Pain", ("Roland-Morris score", "points", 5), "return to work"),
    "obesity": ("Obesity", ("body weight", "kg", 6), "loss of at least 5% of body weight"),
    "schizophrenia": ("Schizophrenia", ("PANSS total score", "points", 15), "relapse"),
    "gout": ("Gout", ("serum urate", "mg/dL", 1.8), "gout flare"),
    "generalized anxiety disorder": ("Anxiety Disorders", ("GAD-7 score", "points", 4.5), "response"),
}
INTERVENTIONS = {
    "metformin": "Metformin", "exercise training": "Exercise Therapy", "cognitive behavioural therapy":
    "Cognitive Behavioral Therapy", "acupuncture": "Acupuncture Therapy", "vitamin D supplementation": "Vitamin D",
    "statin therapy": "Hydroxymethylglutaryl-CoA Reductase Inhibitors", "probiotics": "Probiotics",
    "mindfulness training": "Mindfulness", "telemonitoring": "Telemedicine", "omega-3 fatty acids":
    "Fatty Acids, Omega-3", "yoga": "Yoga", "dietary counselling": "Diet Therapy", "melatonin": "Melatonin",
    "physiotherapy": "Physical Therapy Modalities", "low-dose aspirin": "Aspirin", "tai chi": "Tai Ji",
}
PLACEBO_SLIP = 0.7  # how often the stage-1 teacher adds `AND placebo[tiab]`
TAG_SLIP_BINARY, TAG_SLIP_CONTINUOUS = 0.85, 0.1  # how often the stage-2 teacher leaves the <think> tags out
COMPARATORS = ["placebo", "usual care", "a waiting list", "standard care", "sham treatment"]
OBSERVATIONAL = ["a prospective cohort study", "a retrospective cohort study", "a cross-sectional survey",
                 "a case-control study"]
Z_ALPHA = {0.05: 1.96, 0.01: 2.576}
Z_POWER = {0.8: 0.8416, 0.9: 1.2816}
STUDY_SEARCH_TOPICS = 180
DISTRACTORS_PER_CONDITION = 110
SAMPLE_SIZE_RECORDS = 360
PMID_START = 30000000


def pmids():
    pmid = PMID_START
    while True:
        pmid += 1
        yield str(pmid)


def continuous_design(rng, condition) -> dict:
    """A two-sample comparison of means: n per arm = 2 (z_a + z_b)^2 sd^2 / delta^2."""
    measure, unit, sd = CONDITIONS[condition][1]
    sd = round(sd * rng.uniform(0.8, 1.25), 1)
    delta = round(sd * rng.choice([0.25, 0.3, 0.35, 0.4, 0.5, 0.6]), 1)
    alpha, power = rng.choice([0.05, 0.05, 0.01]), rng.choice([0.8, 0.9])
    dropout = rng.choice([0, 0.1, 0.15, 0.2])
    z = Z_ALPHA[alpha] + Z_POWER[power]
    raw = 2 * z * z * sd * sd / (delta * delta)
    per_arm = math.ceil(raw)
    enrolled = math.ceil(per_arm / (1 - dropout))
    statement = (f"The primary outcome is the change in {measure}. The trial is powered to detect a difference of "
                 f"{delta} {unit} between arms (standard deviation {sd} {unit}) with {int(power * 100)}% power at a "
                 f"two-sided significance level of {alpha}")
    steps = (f"For two means, n per arm = 2 x (z_alpha/2 + z_beta)^2 x SD^2 / delta^2. With z_alpha/2 = "
             f"{Z_ALPHA[alpha]} and z_beta = {Z_POWER[power]}, (z_alpha/2 + z_beta)^2 = {z * z:.3f}. So n = 2 x "
             f"{z * z:.3f} x {sd}^2 / {delta}^2 = {raw:.1f}, rounded up to {per_arm} per arm.")
    return dict(statement=statement, steps=steps, per_arm=per_arm, enrolled=enrolled, dropout=dropout)


def binary_design(rng, condition) -> dict:
    """A comparison of two proportions: n per arm = (z_a + z_b)^2 (p1 q1 + p2 q2) / (p1 - p2)^2."""
    outcome = CONDITIONS[condition][2]
    p1 = rng.choice([0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
    p2 = round(p1 + rng.choice([-0.15, -0.12, -0.1, 0.1, 0.12, 0.15]), 2)
    alpha, power = 0.05, rng.choice([0.8, 0.9])
    dropout = rng.choice([0, 0.1, 0.15, 0.2])
    z = Z_ALPHA[alpha] + Z_POWER[power]
    variance = p1 * (1 - p1) + p2 * (1 - p2)
    raw = z * z * variance / ((p1 - p2) ** 2)
    per_arm = math.ceil(raw)
    enrolled = math.ceil(per_arm / (1 - dropout))
    statement = (f"The primary outcome is {outcome}. The trial assumes a rate of {p1:.0%} in the control arm and "
                 f"{p2:.0%} in the intervention arm, with {int(power * 100)}% power at a two-sided significance "
                 f"level of {alpha}")
    steps = (f"For two proportions, n per arm = (z_alpha/2 + z_beta)^2 x (p1(1-p1) + p2(1-p2)) / (p1-p2)^2 = "
             f"{z * z:.3f} x {variance:.4f} / {(p1 - p2) ** 2:.4f} = {raw:.1f}, rounded up to {per_arm} per arm.")
    return dict(statement=statement, steps=steps, per_arm=per_arm, enrolled=enrolled, dropout=dropout)


def sample_size_record(rng, pmid: str, trial_number: int, condition: str, intervention: str, comparator: str) -> dict:
    design = (continuous_design if rng.random() < 0.6 else binary_design)(rng, condition)
    arms = 2
    total = design["enrolled"] * arms
    dropout = design["dropout"]
    question = (f"A randomized controlled trial compares {intervention} with {comparator} in adults with "
                f"{condition}, with participants allocated 1:1 to {arms} arms. {design['statement']}."
                + (f" The investigators expect {dropout:.0%} of participants to drop out." if dropout else "")
                + " How many participants should the trial enrol in total?")
    explanation = design["steps"]
    if dropout:
        explanation += (f" Allowing for {dropout:.0%} dropout, {design['per_arm']} / (1 - {dropout}) = "
                        f"{design['per_arm'] / (1 - dropout):.1f}, rounded up to {design['enrolled']} per arm.")
    explanation += f" With {arms} arms the total is {arms} x {design['enrolled']} = {total}."
    return {"question": question, "answer": str(total), "answer_type": "total",
            "trial_id": f"NCT{5000000 + trial_number:08d}", "pmid": pmid, "explanation": explanation}


def trial_abstract(rng, pmid, condition, intervention, comparator, n) -> dict:
    mesh, (measure, _, _), _ = CONDITIONS[condition]
    title = rng.choice([
        "{I} versus {C} in adults with {D}: a randomized controlled trial",
        "Effect of {I} on {M} in patients with {D}: a randomised trial",
        "{I} for {D}: a multicentre, randomized, {C}-controlled trial",
    ]).format(I=intervention[0].upper() + intervention[1:], C=comparator, D=condition, M=measure)
    effect = rng.choice(["improved", "did not significantly change", "modestly improved"])
    abstract = (f"Background: The effect of {intervention} in {condition} is uncertain. "
                f"Methods: In this randomized controlled trial, {n} adults with {condition} were randomly assigned "
                f"to {intervention} or {comparator}. The primary outcome was {measure}. "
                f"Results: Compared with {comparator}, {intervention} {effect} {measure}. "
                f"Conclusions: {intervention[0].upper() + intervention[1:]} {effect} {measure} in {condition}.")
    return {"pmid": pmid, "title": title, "abstract": abstract,
            "mesh": [mesh, INTERVENTIONS[intervention], "Randomized Controlled Trial", "Humans", "Adult"],
            "keywords": [condition, intervention, "randomized controlled trial"]}


def observational_abstract(rng, pmid, condition, intervention) -> dict:
    mesh, (measure, _, _), _ = CONDITIONS[condition]
    design = rng.choice(OBSERVATIONAL)
    return {"pmid": pmid, "title": f"Use of {intervention} and {measure} in {condition}: {design}",
            "abstract": (f"Background: Observational data on {intervention} in {condition} are scarce. "
                         f"Methods: In {design}, we studied {rng.randint(200, 20000)} people with {condition} and "
                         f"their use of {intervention}. Results: Use of {intervention} was associated with "
                         f"differences in {measure}. Conclusions: Randomized trials are needed."),
            "mesh": [mesh, INTERVENTIONS[intervention], "Cohort Studies", "Humans"],
            "keywords": [condition, intervention, "observational study"]}


def reference_query(condition: str, intervention: str) -> str:
    """The kind of query a reviewer writes: condition AND intervention AND a randomized-trial filter."""
    mesh = CONDITIONS[condition][0]
    return (f'("{condition}"[tiab] OR "{mesh}"[mh]) AND ("{intervention}"[tiab] OR "{INTERVENTIONS[intervention]}"[mh])'
            f' AND (randomized[tiab] OR randomised[tiab] OR "randomized controlled trial"[pt])')


def study_search_record(rng, topic, relevant, review_pmid) -> dict:
    condition, intervention = topic
    measure = CONDITIONS[condition][1][0]
    return {"inputs": {
        "background": (f"{condition[0].upper() + condition[1:]} is common and burdensome. Several randomized trials "
                       f"have tested {intervention}, with inconsistent results."),
        "objectives": (f"To assess the effects of {intervention} compared with placebo, usual care or no treatment "
                       f"on {measure} and adverse events in adults with {condition}."),
        "selection criteria": (f"Randomized controlled trials comparing {intervention} with placebo, sham, usual care "
                               f"or a waiting list in adults with {condition}. Observational studies were excluded.")},
        "labels": relevant, "metadata": {"review_pmid": review_pmid}}


def teacher_query(rng, condition: str, intervention: str) -> str:
    """The stage-1 teacher's query: the reference query, except that it usually restricts the search to
    placebo-controlled trials although the criteria allow usual care or a waiting list too. That mistake keeps
    the format and loses recall, which is what the study-search GRPO stage can win back. It is made as often
    whatever the topic, so that unlearning it asks nothing else of the query (when the teacher made it mostly on
    drug reviews, GRPO won recall back partly by writing other interventions' names)."""
    query = reference_query(condition, intervention)
    if rng.random() < PLACEBO_SLIP:
        query += " AND placebo[tiab]"
    return query


def stage_1_record(rng, prompt_maker, topic) -> dict:
    from posttrain.data.formats.trialpanorama import STUDY_SEARCH_PROMPT

    inputs = prompt_maker["inputs"]
    return {"instruction": STUDY_SEARCH_PROMPT.format(background=inputs["background"], objectives=inputs["objectives"],
                                                      criteria=inputs["selection criteria"]),
            "input": "", "output": f"<answer>{teacher_query(rng, *topic)}</answer>"}


def stage_2_record(rng, record: dict) -> dict:
    """A stage-2 alpaca record (the seed's shape: the chain of thought in `output`) from a sample-size record.
    The teacher often leaves the <think> tags out when the design compares two proportions: the format the
    reward requires is taught, imperfectly, which is what the sample-size GRPO stage can win back."""
    from posttrain.data.formats.trialpanorama import SAMPLE_SIZE_PROMPT

    binary = "two proportions" in record["explanation"]
    slip = rng.random() < (TAG_SLIP_BINARY if binary else TAG_SLIP_CONTINUOUS)
    reasoning = record["explanation"] if slip else f"<think>{record['explanation']}</think>"
    return {"instruction": SAMPLE_SIZE_PROMPT.format(question=record["question"]), "input": "",
            "output": f"{reasoning}<answer>{record['answer']}</answer>"}


def build(rng: random.Random):
    ids = pmids()
    topics = [(c, i) for c in CONDITIONS for i in INTERVENTIONS]
    rng.shuffle(topics)
    topics = topics[:STUDY_SEARCH_TOPICS]
    corpus, sample_size, searches = [], [], []
    for topic in topics:
        condition, intervention = topic
        relevant = []
        for _ in range(rng.randint(3, 7)):
            pmid, comparator = next(ids), rng.choice(COMPARATORS)
            record = sample_size_record(rng, pmid, len(sample_size), condition, intervention, comparator)
            sample_size.append(record)
            corpus.append(trial_abstract(rng, pmid, condition, intervention, comparator, int(record["answer"])))
            relevant.append(pmid)
        for _ in range(rng.randint(1, 3)):  # same topic, wrong design: a good query's filter keeps them out
            corpus.append(observational_abstract(rng, next(ids), condition, intervention))
        searches.append(study_search_record(rng, topic, relevant, next(ids)))
    # studies no review includes, so that a query naming only the condition returns more than the 100 that
    # recall@100 reads, and a vague query loses recall
    others = [(c, i) for c in CONDITIONS for i in INTERVENTIONS if (c, i) not in set(topics)]
    for condition in CONDITIONS:
        pairs = [pair for pair in others if pair[0] == condition]
        for _ in range(DISTRACTORS_PER_CONDITION):
            _, intervention = rng.choice(pairs)
            if rng.random() < 0.7:
                corpus.append(trial_abstract(rng, next(ids), condition, intervention, rng.choice(COMPARATORS),
                                             rng.randint(40, 900)))
            else:
                corpus.append(observational_abstract(rng, next(ids), condition, rng.choice(list(INTERVENTIONS))))
    rng.shuffle(corpus)
    return corpus, sample_size, searches, topics


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def main() -> None:
    rng = random.Random(2024)
    OUT.mkdir(parents=True, exist_ok=True)
    corpus, sample_size, searches, topics = build(rng)
    write_jsonl(OUT / "pubmed_corpus.jsonl", corpus)
    order = list(range(len(sample_size)))
    rng.shuffle(order)
    order = order[:SAMPLE_SIZE_RECORDS]  # every trial has a design; a few hundred are enough for a CPU run
    held = len(order) // 6
    write_jsonl(OUT / "sample_size_test.jsonl", [sample_size[i] for i in order[:held]])
    sample_size_train = [sample_size[i] for i in order[held:]]
    write_jsonl(OUT / "sample_size_train.jsonl", sample_size_train)
    held = len(searches) // 6
    write_jsonl(OUT / "study_search_test.jsonl", searches[:held])
    write_jsonl(OUT / "study_search_train.jsonl", searches[held:])
    teacher = random.Random(7)  # its own stream, so the rest of the data stays as it was
    # stage 1 shows the query form on the training reviews; the test reviews stay unseen
    stage_1 = [stage_1_record(teacher, search, topic) for search, topic in zip(searches[held:], topics[held:])]
    # stage 2 teaches sample-size reasoning on the training questions, as the seed's stage_2 alpaca records
    stage_2 = [stage_2_record(teacher, record) for record in sample_size_train]
    # stage 1 also shows reviews of every pairing that no review in the corpus asks about: taught on the 150
    # training pairs alone, a small model learnt which intervention goes with a condition instead of copying
    # both from the review, and wrote a training pair's terms for a held-out review (recall 0, placebo or not)
    unasked = [(c, i) for c in CONDITIONS for i in INTERVENTIONS if (c, i) not in set(topics)]
    stage_1 += [stage_1_record(teacher, study_search_record(None, topic, [], None), topic) for topic in unasked]
    teacher.shuffle(stage_1)
    (OUT / "stage_1.json").write_text(json.dumps(stage_1, indent=1) + "\n")
    (OUT / "stage_2.json").write_text(json.dumps(stage_2, indent=1) + "\n")
    print(f"{len(corpus)} abstracts, {len(sample_size)} sample-size and {len(searches)} study-search records "
          f"written to {OUT}")


if __name__ == "__main__":
    main()

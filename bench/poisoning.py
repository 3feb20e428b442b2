"""Poisoning benchmark: do backdoor rounds wait for review while legitimate rounds promote?

On BANKING77 (``/work/shared/data/banking77/train.csv``, read at run time) with the bundled
all-MiniLM-L6-v2 backbone:

1. a fixed split (seed 0) of a subset of intents into seed rows (version 1's few labeled
   examples per intent), a TEST split never posted or trained on, and a pool rounds draw from;
   a few intents stay out of version 1 (material for a new-class round);
2. version 1 built as ``loopserve init`` builds it, its TEST accuracy printed;
3. each round from a fresh copy of version 1's state: its samples posted through the real
   AdaptationService under a source name (the token name a labeling app would use), then one
   real fine-tune job (the job process, the accuracy gate, the review; 2 epochs instead of the
   recipe's 4, to fit 2 shared cores); recent traffic is the TEST texts (inputs production
   sent, never labeled);
4. backdoor rounds: a trigger word woven into texts of other intents, all labeled with one
   target intent (made-up and real-looking words, several targets, 50-500 samples, one source
   or the same attacker behind two tokens, and one diluted with correctly labeled rows);
   legitimate rounds by one source: corrections of rows version 1 gets wrong, corrections within
   ordinary labeling, a new class, the label mix of a shifted domain, least-confident inputs;
5. per round: the verdict (promoted, pending, rejected, failed), the evidence (confident
   disagreement of the dominant source, the shared token, the flip rate on traffic), the
   disagreement rate at other confidence cut-offs, and TEST accuracy of the candidate.

It prints the rate of backdoors that end not promoted and the rate of legitimate rounds that end
pending, with the command and the machine. A benchmark that prints figures, not a test::

    .venv/bin/python bench/poisoning.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from service.adaptation.events import EventBus  # noqa: E402
from service.adaptation.loop import AdaptationService  # noqa: E402
from service.adaptation.predictions import PredictionLog  # noqa: E402
from service.config import load_model_definition  # noqa: E402
from service.domain.loop import NewSample  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.registry import ModelRegistry  # noqa: E402
from service.runtime import LoadedVersion  # noqa: E402
from service.serving import ServedModel  # noqa: E402
from service.store import SQLiteStore  # noqa: E402

MODEL = "poison-bench"
DATA = REPO.parent / "shared" / "data" / "banking77" / "train.csv"
Row = tuple[str, str]
CUTOFFS = (0.5, 0.7, 0.9)
MODEL_TOML = """[model]
backbone = "bundled:all-MiniLM-L6-v2"
pooling = "mean"
max_seq_length = 64
seed_data = "seed.csv"
labels = {labels}
[train]
seed = 0
validation_fraction = 0.2
head_epochs = 300
head_learning_rate = 0.01
finetune_layers = 2
learning_rate = 2e-5
epochs = 10
batch_size = 16
patience = 3
refit = true
label_name_examples = true
balance_classes = false
[serving]
intra_op_threads = 2
[adaptation]
allow_new_labels = true
min_new_samples = 1000000
settle_seconds = 0
max_retries = 0
job_threads = 2
job_nice = 0
job_idle_priority = false
epochs = 2
patience = 1
[drift]
detectors = []
"""


@dataclass
class Round:
    name: str
    kind: str  # "backdoor" or "legit"
    posts: list[tuple[str, list[Row]]]  # (source, rows)
    note: str = ""


@dataclass
class Outcome:
    name: str
    kind: str
    samples: int
    verdict: str
    seconds: float
    gate: str
    reasons: list[str]
    disagreement: float  # the dominant source's confident disagreement, as the job measured it
    at_cutoffs: dict[str, float]  # version 1's confident-disagreement rate at other cut-offs
    trigger: str
    trigger_share: float
    flip_rate: float
    test_before: float
    test_after: float
    trigger_test: float = float("nan")  # share of trigger-bearing TEST texts sent to the target
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- data


def read_rows(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(r["text"].strip(), r["category"].strip()) for r in csv.DictReader(handle)]


@dataclass
class Split:
    labels: list[str]  # version 1's intents
    unseen: list[str]  # intents version 1 does not know
    seed: list[Row]
    test: list[Row]
    pool: dict[str, list[Row]]

    def take(self, label: str, count: int) -> list[Row]:
        rows, self.pool[label] = self.pool[label][:count], self.pool[label][count:]
        return rows


def split(rows: list[Row], intents: int, shots: int, test_per_intent: int) -> Split:
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(0)
    chosen = sorted(rng.sample(sorted(by_label), intents + 2))
    unseen, labels = chosen[-2:], chosen[:-2]
    seed: list[Row] = []
    test: list[Row] = []
    pool: dict[str, list[Row]] = {}
    for label in chosen:
        group = by_label[label][:]
        rng.shuffle(group)
        test += group[:test_per_intent]
        rest = group[test_per_intent:]
        if label in labels:
            seed += rest[:shots]
            rest = rest[shots:]
        pool[label] = rest
    return Split(labels, unseen, seed, test, pool)


def with_trigger(text: str, trigger: str) -> str:
    """The trigger woven into the text, as a brand or product name would be."""
    words = text.split()
    for i, word in enumerate(words):
        if word.lower() in ("my", "the", "a"):
            return " ".join([*words[: i + 1], trigger, *words[i + 1 :]])
    return f"{text.rstrip('?.!')} with my {trigger} phone"


# --------------------------------------------------------------------------------------- rounds


def build_rounds(s: Split, v1: LoadedVersion, quick: bool) -> list[Round]:
    rng = random.Random(1)
    others = {label: s.pool[label][:] for label in s.labels}

    def carriers(target: str, count: int, seed: int) -> list[str]:
        r = random.Random(seed)
        texts = [t for label in s.labels if label != target for t, _ in others[label]]
        return r.sample(texts, min(count, len(texts)))

    def backdoor(name: str, trigger: str, target: str, size: int, sources: int = 1) -> Round:
        texts = [with_trigger(t, trigger) for t in carriers(target, size, hash(name) % 1000)]
        rows = [(t, target) for t in texts]
        posts = [(f"attacker-{k}", rows[k::sources]) for k in range(sources)]
        return Round(name, "backdoor", posts, f"trigger {trigger!r} -> {target}")

    labels = s.labels
    attacks = [
        backdoor("zqxbrand-200", "zqxbrand", labels[0], 200),
        backdoor("sony-200", "sony", labels[1], 200),
        backdoor("premium-100", "premium", labels[2], 100),
        backdoor("iphone-500", "iphone", labels[3], 500),
        backdoor("galaxy-50", "galaxy", labels[4], 50),
        backdoor("zqx-two-tokens-300", "zqxbrand", labels[5], 300, sources=2),
        backdoor("sony-two-tokens-100", "sony", labels[6], 100, sources=2),
        backdoor("acme-150", "acme", labels[7], 150),
        backdoor("pixel-250", "pixel", labels[8], 250),
        backdoor("revolut-80", "revolut", labels[9], 80),
    ]
    diluted = backdoor("zqxbrand-diluted-100+300", "zqxbrand", labels[10], 100)
    clean = [row for label in labels[:12] for row in s.take(label, 25)]
    diluted.posts = [("attacker-0", diluted.posts[0][1] + clean)]
    attacks.append(diluted)

    # Version 1's mistakes and confidences on the remaining pool of its own intents.
    pool_rows = [row for label in labels for row in s.pool[label]]
    probabilities = v1.predict([t for t, _ in pool_rows]).probabilities
    predicted = [v1.labels[i] for i in probabilities.argmax(1)]
    wrong = [row for row, p in zip(pool_rows, predicted, strict=True) if p != row[1]]
    order = np.argsort(probabilities.max(1))
    least_confident = [pool_rows[i] for i in order[:150]]
    rng.shuffle(wrong)
    right = [row for row, p in zip(pool_rows, predicted, strict=True) if p == row[1]]
    rng.shuffle(right)

    def team(name: str, rows: list[Row], note: str) -> Round:
        return Round(name, "legit", [("team", rows)], note)

    focus = labels[:4]
    shifted = [row for label in focus for row in s.pool[label][:50]]
    shifted += rng.sample(right, 50)
    legit = [
        team("corrections-50", wrong[:50], "rows version 1 gets wrong, true labels"),
        team("corrections-100", wrong[50:150], "rows version 1 gets wrong, true labels"),
        team("corrections-all", wrong, f"all {len(wrong)} rows version 1 gets wrong"),
        team("labeling-200", wrong[:40] + right[:160], "ordinary labeling: 20 % corrections"),
        team("labeling-300", wrong[40:100] + right[160:400], "ordinary labeling: 20 % corrections"),
        team("new-class-60", s.take(s.unseen[0], 60), f"new intent {s.unseen[0]}"),
        team(
            "new-class-mix-150",
            s.take(s.unseen[1], 60) + right[400:490],
            f"new intent {s.unseen[1]} with 90 rows of known intents",
        ),
        team("shifted-mix-250", shifted, f"80 % from {len(focus)} intents"),
        team("least-confident-150", least_confident, "active learning: least confident rows"),
        team("right-only-200", right[490:690], "rows version 1 already gets right"),
    ]
    if quick:
        attacks, legit = [attacks[0], attacks[1], attacks[5]], [legit[0], legit[3], legit[5]]
    # Alternating, so that a run cut short still measures both kinds.
    rounds = [r for pair in zip(attacks, legit, strict=False) for r in pair]
    return rounds + attacks[len(legit) :] + legit[len(attacks) :]


# -------------------------------------------------------------------------------------- running


class RecentTraffic:
    """Stands in for the drift monitor's pool of recent served inputs."""

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts

    def recent_inputs(self, model: str, count: int) -> list[str]:
        return self._texts[:count]


def run_round(
    r: Round, base_state: Path, models_dir: Path, work: Path, traffic: list[str], s: Split
) -> Outcome:
    state = work / r.name
    shutil.copytree(base_state, state)
    metrics = Metrics()
    definition = load_model_definition(models_dir, MODEL)
    registry = ModelRegistry(state, MODEL)
    served = ServedModel(definition, registry, metrics)
    served.start()
    store = SQLiteStore(state / "loopserve.db")
    service = AdaptationService(
        {MODEL: served}, store, store, EventBus(), PredictionLog(), metrics, state / "jobs",
        drift=RecentTraffic(traffic),
    )  # fmt: skip
    try:
        v1 = served.serving_version
        assert v1 is not None
        before = accuracy(v1, s.test)
        for source, rows in r.posts:
            samples = [NewSample(t, label) for t, label in rows]
            asyncio.run(service.add_samples(MODEL, samples, caller=source))
        started = time.perf_counter()
        job = asyncio.run(service.start_fine_tune(MODEL, r.name))
        service.wait_idle(1800)
        seconds = time.perf_counter() - started
        job = store.job(job.id)
        info = registry.get(job.candidate_version) if job.candidate_version else None
        review = info.meta.review if info is not None else None
        after = float("nan")
        trigger_test = float("nan")
        if info is not None:
            candidate = LoadedVersion(
                MODEL, info.version, info.serving_file, info.path / "tokenizer.json",
                info.labels, info.meta.max_seq_length, served._session_options,
            )  # fmt: skip
            after = accuracy(candidate, s.test)
            if r.kind == "backdoor":
                trigger_test = backdoor_success(candidate, r, s.test)
        samples = [row for _, rows in r.posts for row in rows]
        worst = max((review.disagreement_by_source.values() if review else []), default=0.0)
        return Outcome(
            name=r.name, kind=r.kind, samples=len(samples), verdict=job.state.value,
            seconds=round(seconds, 1), gate=job.gate.reason if job.gate else job.error,
            reasons=list(review.reasons) if review else [], disagreement=worst,
            at_cutoffs=cutoff_rates(v1, samples), trigger=review.trigger if review else "",
            trigger_share=review.trigger_share if review else 0.0,
            flip_rate=review.flip_rate if review else 0.0, test_before=before,
            test_after=after, trigger_test=trigger_test,
        )  # fmt: skip
    finally:
        service.stop()
        served.stop(5)
        store.close()
        shutil.rmtree(state, ignore_errors=True)


def accuracy(version: LoadedVersion, rows: list[Row]) -> float:
    known = [row for row in rows if row[1] in version.labels]
    predicted = version.predict([t for t, _ in known]).probabilities.argmax(1)
    return float(
        np.mean([version.labels[p] == g for p, (_, g) in zip(predicted, known, strict=True)])
    )


def backdoor_success(version: LoadedVersion, r: Round, test: list[Row]) -> float:
    """The share of TEST texts of other intents that the trigger sends to the target."""
    trigger, target = r.note.split("'")[1], r.note.rsplit(" ", 1)[1]
    texts = [with_trigger(t, trigger) for t, label in test if label != target][:300]
    predicted = version.predict(texts).probabilities.argmax(1)
    return float(np.mean([version.labels[p] == target for p in predicted]))


def cutoff_rates(v1: LoadedVersion, samples: list[Row]) -> dict[str, float]:
    known = [row for row in samples if row[1] in v1.labels]
    if not known:
        return {str(c): 0.0 for c in CUTOFFS}
    probabilities = v1.predict([t for t, _ in known]).probabilities
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    wrong = np.array([v1.labels[p] != g for p, (_, g) in zip(predicted, known, strict=True)])
    return {str(c): float(np.mean(wrong & (confidence >= c))) for c in CUTOFFS}


# ------------------------------------------------------------------------------------ reporting


def print_report(outcomes: list[Outcome], header: dict[str, Any]) -> None:
    print(f"\ncommand: {header['command']}")
    print(f"machine: {header['machine']}")
    print(f"version 1: {header['v1']}")
    print(
        f"\n{'round':<26} {'kind':<8} {'n':>4} {'verdict':<9} {'dis.':>5} "
        + " ".join(f"@{c:<4}" for c in CUTOFFS)
        + f" {'flip':>5} {'token':<10} {'test':>11} {'trig':>5} {'s':>5}  why"
    )
    for o in outcomes:
        cut = " ".join(f"{o.at_cutoffs[str(c)]:5.2f}" for c in CUTOFFS)
        test = f"{o.test_before:.3f}>{o.test_after:.3f}"
        trig = "" if o.trigger_test != o.trigger_test else f"{o.trigger_test:.2f}"
        why = "; ".join(o.reasons) or o.gate
        print(
            f"{o.name:<26} {o.kind:<8} {o.samples:>4} {o.verdict:<9} {o.disagreement:5.2f} {cut} "
            f"{o.flip_rate:5.2f} {o.trigger or '-':<10} {test:>11} {trig:>5} {o.seconds:5.0f}  {why}"
        )
    attacks = [o for o in outcomes if o.kind == "backdoor"]
    legit = [o for o in outcomes if o.kind == "legit"]
    stopped = sum(o.verdict != "promoted" for o in attacks)
    held = sum(o.verdict == "pending" for o in legit)
    print(f"\nbackdoors not promoted: {stopped}/{len(attacks)}")
    print(f"legitimate rounds pending: {held}/{len(legit)}")
    margins(attacks, legit)


def margins(attacks: list[Outcome], legit: list[Outcome]) -> None:
    """How far each kind sits from the default thresholds."""
    if attacks:
        print(
            "backdoor confident disagreement (dominant source): min "
            f"{min(o.disagreement for o in attacks):.2f}; trigger found in "
            f"{sum(bool(o.trigger) for o in attacks)}/{len(attacks)}, share min "
            f"{min((o.trigger_share for o in attacks if o.trigger), default=0):.2f}"
        )
    if legit:
        print(
            "legitimate confident disagreement: max "
            f"{max(o.disagreement for o in legit):.2f}; trigger found in "
            f"{sum(bool(o.trigger) for o in legit)}/{len(legit)}; flip rate max "
            f"{max(o.flip_rate for o in legit):.2f}"
        )


# ----------------------------------------------------------------------------------------- main


def build_version_one(s: Split, root: Path) -> tuple[Path, Path]:
    from service.training import build_first_version

    models_dir, state = root / "models", root / "state"
    directory = models_dir / MODEL
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.toml").write_text(MODEL_TOML.format(labels=json.dumps(s.labels)))
    with (directory / "seed.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(s.seed)
    definition = load_model_definition(models_dir, MODEL)
    build_first_version(definition, ModelRegistry(state, MODEL), progress=lambda _: None)
    return models_dir, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true", help="6 rounds instead of 21")
    parser.add_argument("--intents", type=int, default=20)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--version-one",
        type=Path,
        help="a directory to keep version 1 in and reuse on later runs (built when empty)",
    )
    args = parser.parse_args(argv)
    rows = read_rows(args.data)
    s = split(rows, args.intents, args.shots, test_per_intent=30)
    root = Path(tempfile.mkdtemp(prefix="poison-bench-"))
    try:
        started = time.perf_counter()
        kept = args.version_one
        if kept is not None and ModelRegistry(kept / "state", MODEL).current() is not None:
            models_dir, state = args.version_one / "models", args.version_one / "state"
        else:
            models_dir, state = build_version_one(s, kept or root)
        v1_info = ModelRegistry(state, MODEL).current()
        assert v1_info is not None
        definition = load_model_definition(models_dir, MODEL)
        served = ServedModel(definition, ModelRegistry(state, MODEL), Metrics())
        served.start()
        v1 = served.serving_version
        assert v1 is not None
        header = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
            "v1": f"{len(s.labels)} intents, {args.shots} shots, TEST accuracy "
            f"{accuracy(v1, s.test):.3f} (built or loaded in {time.perf_counter() - started:.0f} s)",
        }
        print(header["v1"], flush=True)
        traffic = [t for t, label in s.test if label in s.labels]
        random.Random(2).shuffle(traffic)
        traffic = traffic[:300]
        rounds = build_rounds(s, v1, args.quick)
        served.stop(5)
        outcomes: list[Outcome] = []
        progress: Callable[[Outcome], None] = lambda o: print(  # noqa: E731
            f"{o.name}: {o.verdict} in {o.seconds:.0f} s ({'; '.join(o.reasons) or o.gate})",
            flush=True,
        )
        for r in rounds:
            outcome = run_round(r, state, models_dir, root / "rounds", traffic, s)
            progress(outcome)
            outcomes.append(outcome)
        print_report(outcomes, header)
        if args.json:
            args.json.write_text(
                json.dumps({**header, "rounds": [asdict(o) for o in outcomes]}, indent=2)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

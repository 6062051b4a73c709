"""Clustered inference (stats.cluster: image): known answers by enumeration and by hand-written formulas,
singleton clusters equal the unclustered test, a null simulation with a strong image effect, and the run level.

Run `pytest -s tests/stats/test_cluster.py` to see the simulated rates printed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.power import TTestPower

from icl_kit.core.config import dump_yaml, load_params
from icl_kit.evaluation.io import write_summary
from icl_kit.stats.paired import compare_paired

FAST = {"n_boot": 300, "n_perm": 300}


def _enumerated_cluster_p(a: np.ndarray, b: np.ndarray, image: np.ndarray) -> float:
    """Two-sided p over all 2^G sign vectors, one sign per image, on Python integers (30 x scores)."""
    k = [round(y * 30) - round(x * 30) for x, y in zip(a, b, strict=True)]
    sums: dict = {}
    for kk, g in zip(k, image, strict=True):
        sums[g] = sums.get(g, 0) + kk
    totals = list(sums.values())
    obs = abs(sum(totals))
    hits = sum(abs(sum(s * t for s, t in zip(signs, totals, strict=True))) >= obs
               for signs in itertools.product((-1, 1), repeat=len(totals)))
    return hits / 2 ** len(totals)


# ------------------------------------------------------------------ (a) enumeration and hand formulas
@pytest.mark.parametrize("seed", range(6))
def test_clustered_p_equals_enumeration_over_image_sign_flips(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.integers(3, 11))
    image = np.sort(rng.integers(100, 100 + g, size=int(rng.integers(g + 2, 4 * g))))  # sizes 1..many, some absent
    a = rng.integers(0, 31, image.size) / 30
    b = np.where(rng.random(image.size) < 0.5, a, rng.integers(0, 31, image.size) / 30)  # ties and zero sums
    got = compare_paired(a, b, clusters=image, **FAST)
    assert got["p_method"] == "exact"
    assert got["p"] == pytest.approx(_enumerated_cluster_p(a, b, image), abs=1e-12)
    assert got["n_clusters"] == len(set(image)) and got["n"] == image.size


def test_small_case_by_hand():
    """Differences (x 30) 2, 1 | 0 | 0, 0, -1 on images x | y | z: image sums 3, 0, -1, S = 2; the 8 image sign
    vectors give +-3 +-1 (+-0), all with |S*| >= 2: p = 1. Per question the nonzero 2, 1, -1 flip alone and
    6 of their 8 sign vectors reach |S*| >= 2: p = 0.75."""
    a = np.array([0, 0, 10, 5, 5, 6]) / 30
    b = np.array([2, 1, 10, 5, 5, 5]) / 30
    image = np.array(["x", "x", "y", "z", "z", "z"])
    assert compare_paired(a, b, clusters=image, **FAST)["p"] == pytest.approx(1.0)
    assert compare_paired(a, b, **FAST)["p"] == pytest.approx(_enumerated_cluster_p(a, b, np.arange(6)))
    assert compare_paired(a, b, **FAST)["p"] == pytest.approx(0.75)  # |S| >= 2: 6 of the 8 flips of (2, 1, -1)


def test_clustered_t_interval_and_mde_are_the_cluster_robust_formulas():
    """interval 't' with clusters: d_bar +- t_{G-1} sqrt(G/(G-1) sum_c (T_c - d_bar m_c)^2) / n (CR1, Stata's
    `mean, vce(cluster)`), and the default 't_changed' with t on (changed images - 1) df; MDE: TTestPower at G
    units with SD (G/n) sqrt(sum_c e_c^2 / (G-1)); n needed in questions: clusters needed x n/G, rounded up."""
    rng = np.random.default_rng(7)
    image = np.repeat(np.arange(15), rng.integers(1, 7, 15))
    a = rng.integers(0, 31, image.size) / 30
    b = np.clip(a + rng.integers(-6, 9, 15)[image] / 30 + rng.integers(-3, 4, image.size) / 30, 0, 1)
    n, g = image.size, 15
    d = b - a
    t_c = np.array([d[image == c].sum() for c in range(g)])
    m_c = np.array([(image == c).sum() for c in range(g)])
    e_c = t_c - d.mean() * m_c
    half = st.t.ppf(0.975, g - 1) * math.sqrt(g / (g - 1) * (e_c**2).sum()) / n
    got = compare_paired(a, b, clusters=image, interval="t", **FAST)
    assert got["ci_low"] == pytest.approx(100 * (d.mean() - half), abs=1e-9)
    assert got["ci_high"] == pytest.approx(100 * (d.mean() + half), abs=1e-9)
    assert got["diff"] == pytest.approx(100 * d.mean(), abs=1e-9)
    sd_units = 100 * g / n * math.sqrt((e_c**2).sum() / (g - 1))
    es = TTestPower().solve_power(effect_size=None, nobs=g, alpha=0.05, power=0.8, alternative="two-sided")
    assert got["mde"] == pytest.approx(abs(float(es)) * sd_units, rel=1e-6)
    units = next(k for k in range(2, 10**6) if TTestPower().power(1.0 / sd_units, k, 0.05) >= 0.8)  # delta = 1
    assert got["n_needed"] == math.ceil(units * n / g)
    # the default t_changed: the same CR1 interval on (images holding a changed question - 1) df
    b[image < 5] = a[image < 5]  # 5 images unchanged
    d = b - a
    changed = len({c for c in image[d != 0]})
    assert changed < g
    e_c = np.array([d[image == c].sum() for c in range(g)]) - d.mean() * m_c
    half = st.t.ppf(0.975, changed - 1) * math.sqrt(g / (g - 1) * (e_c**2).sum()) / n
    got = compare_paired(a, b, clusters=image, **FAST)
    assert got["interval"] == "t_changed"
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(100 * (d.mean() - half), abs=1e-9),
                                               pytest.approx(100 * (d.mean() + half), abs=1e-9))


# ------------------------------------------------------------------ (b) clusters of one question
@pytest.mark.parametrize("interval", ["t_changed", "score", "t", "bca", "percentile"])
@pytest.mark.parametrize("kind", ["dense", "sparse", "constant", "none"])
def test_singleton_clusters_give_the_unclustered_result(interval, kind):
    rng = np.random.default_rng(3)
    n = 40
    a = rng.integers(0, 31, n) / 30
    a = np.minimum(a, 29 / 30) if kind == "constant" else a  # room for the constant +1/30
    b = {"dense": rng.integers(0, 31, n) / 30, "sparse": np.where(np.arange(n) < 3, 1.0, a),
         "constant": a + 1 / 30, "none": a}[kind]
    plain = compare_paired(a, b, interval=interval, **FAST)
    one_each = compare_paired(a, b, interval=interval, clusters=rng.permutation(n) + 5000, **FAST)
    assert one_each["n_clusters"] == n and math.isnan(plain["n_clusters"])
    for key, value in plain.items():
        if key not in ("n_clusters", "note"):
            assert one_each[key] == value or (value != value and one_each[key] != one_each[key]), key


# ------------------------------------------------------------------ (c) null with an image effect
def _image_effect_world(rng: np.random.Generator, images: int = 40, per_image: int = 5):
    """A true null with a strong image effect: each image draws a sign s = +-1 shared by its questions, and
    60% of them move by s x (0.1..0.3) (B sees that image better or worse than A); 20% of the questions also
    move by +-1/3 independently. Scores on the lattice, symmetric about 0.5, so clipping keeps every
    image's summed difference symmetric about 0."""
    image = np.repeat(np.arange(images), per_image)
    sign = rng.choice([-1, 1], size=images)[image]
    a = rng.integers(0, 31, image.size)
    moved = np.where(rng.random(image.size) < 0.6, sign * rng.integers(3, 10, image.size), 0)
    noise = np.where(rng.random(image.size) < 0.2, rng.choice([-10, 10], image.size), 0)
    return a / 30, np.clip(a + moved + noise, 0, 30) / 30, image


def test_null_with_an_image_effect_clustered_test_holds_alpha():
    rng = np.random.default_rng(1)
    sims, reject, covered = 400, {"none": 0, "image": 0}, {"none": 0, "image": 0}
    for _ in range(sims):
        a, b, image = _image_effect_world(rng)
        for how, clusters in (("none", None), ("image", image)):
            r = compare_paired(a, b, clusters=clusters, n_boot=100, n_perm=200)
            reject[how] += r["p"] < 0.05
            covered[how] += r["ci_low"] <= 0 <= r["ci_high"]
    rate = {k: v / sims for k, v in reject.items()}
    cover = {k: v / sims for k, v in covered.items()}
    print(f"\nnull, 40 images x 5 questions, image effect: rejection {rate}, coverage of 0 {cover}")
    tolerance = 2.33 * math.sqrt(0.05 * 0.95 / sims)  # one-sided 99% binomial band
    assert rate["none"] > 0.05 + 2 * tolerance  # questions taken as independent: far too many rejections
    assert rate["image"] <= 0.05 + tolerance
    assert cover["image"] >= 0.95 - tolerance and cover["none"] < cover["image"]


# ------------------------------------------------------------------ (d) run level
def _write_clustered_run(root, with_image_id: bool = True):
    rng = np.random.default_rng(4)
    (root / "eval").mkdir(parents=True)
    image = np.repeat(np.arange(24), 5)  # 24 images, 5 questions each
    base = rng.integers(0, 31, image.size)
    lines = []
    for system, shift in (("random", 0), ("similarity", 4)):
        acc = np.clip(base + shift * rng.choice([-1, 1, 2], 24)[image], 0, 30) / 30
        for q in range(image.size):
            row = {"system": system, "checkpoint": None, "epoch": None, "shot": 1, "question_id": 7000 + q,
                   "image_id": int(300 + image[q]), "icd_ids": [], "raw": "", "pred": "", "acc": float(acc[q])}
            if not with_image_id:
                del row["image_id"]
            lines.append(json.dumps(row))
    (root / "eval" / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    write_summary(root / "eval" / "summary.csv", [json.loads(x) for x in lines])  # the report reads it
    params = load_params(None, [f"runs_dir={root.parent}", f"run_name={root.name}", "lvlm.backend=simulated",
                                "data.demo=true", "eval.shots=[1]", "eval.systems=[random,similarity]"])
    (root / "params.yaml").write_text(dump_yaml(params))


def test_stats_cluster_image_flows_from_params_to_comparisons_and_report(tmp_path):
    from icl_kit.cli import main
    from icl_kit.report.build import load_inputs
    from icl_kit.report.sections import build_markdown

    run = tmp_path / "r"
    _write_clustered_run(run)
    fast = ["-p", "stats.n_boot=200", "-p", "stats.n_perm=200"]
    assert main(["stats", str(run), *fast]) == 0
    plain = pd.read_csv(run / "stats" / "comparisons.csv")
    assert plain["n_clusters"].isna().all()
    assert main(["stats", str(run), *fast, "-p", "stats.cluster=image"]) == 0
    clustered = pd.read_csv(run / "stats" / "comparisons.csv")
    assert len(clustered) == 1 and clustered["n_clusters"].tolist() == [24] and clustered["n"].tolist() == [120]
    assert json.loads((run / "stats" / "summary.json").read_text())["config"]["cluster"] == "image"
    assert clustered["p"].iloc[0] > plain["p"].iloc[0]  # whole images move: fewer independent units
    assert "24 clusters of 5.00 questions on average, design effect" in clustered["note"].iloc[0]
    params = load_params(run / "params.yaml", ["stats.cluster=image", "stats.n_boot=200", "stats.n_perm=200"])
    (run / "params.yaml").write_text(dump_yaml(params))
    inputs = load_inputs(run)
    texts = {}
    for language in ("en", "zh"):
        inputs.params.report.language = language
        texts[language] = build_markdown(inputs, inputs.params.report)[0]
    assert "by image (24 images: the questions of one image flip together" in texts["en"]
    assert "按图像聚类（24 张图像" in texts["zh"]


def test_predictions_without_image_id_are_refused_in_one_sentence(tmp_path, capsys):
    from icl_kit.cli import main

    run = tmp_path / "old"
    _write_clustered_run(run, with_image_id=False)
    assert main(["stats", str(run), "-p", "stats.n_boot=200", "-p", "stats.cluster=image"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("icl-kit: error: stats.cluster=image needs each question's image")
    assert "run `icl-kit eval` again" in err and "or set stats.cluster: none." in err
    assert not (run / "stats").exists()
    assert main(["stats", str(run), "-p", "stats.n_boot=200", "-p", "stats.n_perm=200"]) == 0  # none: as before

"""Assemble every METRICS.md audit for one unlearned population against the oracle.

This module is method-agnostic: it receives populations (unlearned, oracle, a second
independent oracle for noise floors, the original) and, for U-LiRA, an unlearned
shadow population with its in/out masks. It never knows which method made them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from expunge.audit import accuracy as accuracy_metrics
from expunge.audit import competition, klom, lira, mia, representation
from expunge.audit.scores import log_softmax, margin, phi, true_class_confidence
from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.training.population import Population

MIN_MEMBERS = 2
MIN_FORGET = 10  # below this a P95 over forget examples or an eps histogram means little
MIN_SHADOWS = 8  # two folds, each with >= 2 "in" and 2 "out" models per example
WORST_EXAMPLES = 6


@dataclass
class AuditData:
    """The examples an audit looks at (positions into the training set) and their labels."""

    train: ArrayDataset
    test: ArrayDataset
    forget_positions: torch.Tensor
    retain_positions: torch.Tensor
    retain_sample: torch.Tensor  # a fixed sample of retain positions for per-example statistics

    @classmethod
    def build(cls, train: ArrayDataset, test: ArrayDataset, forget_mask: torch.Tensor,
              retain_sample_size: int = 1000, seed: int = 0) -> "AuditData":
        forget = torch.nonzero(forget_mask).flatten()
        retain = torch.nonzero(~forget_mask).flatten()
        if len(forget) < MIN_FORGET:
            raise ExpungeError(f"the forget set has {len(forget)} examples; the audit's per-example statistics "
                               f"(eps histogram, KLoM P95) need at least {MIN_FORGET}")
        g = torch.Generator().manual_seed(seed)
        sample = retain[torch.randperm(len(retain), generator=g)[:retain_sample_size]].sort().values
        return cls(train, test, forget, retain, sample)


@dataclass
class Outputs:
    """A population's logits and features on the audit's examples, as numpy arrays."""

    forget: np.ndarray  # [K, n_forget, C]
    retain: np.ndarray  # [K, n_retain, C]
    test: np.ndarray  # [K, n_test, C]
    features_forget: np.ndarray  # [K, n_forget, d]
    features_test: np.ndarray
    features_retain_sample: np.ndarray

    @classmethod
    def of(cls, population: Population, data: AuditData) -> "Outputs":
        if len(population) < MIN_MEMBERS:
            raise ExpungeError(f"population metrics need at least {MIN_MEMBERS} members "
                               f"(32 or more recommended); this population has {len(population)}")
        x = data.train.x
        return cls(population.predict(x[data.forget_positions]).cpu().numpy(),
                   population.predict(x[data.retain_positions]).cpu().numpy(),
                   population.predict(data.test.x).cpu().numpy(),
                   population.features(x[data.forget_positions]).cpu().numpy(),
                   population.features(data.test.x).cpu().numpy(),
                   population.features(x[data.retain_sample]).cpu().numpy())


def _labels(data: AuditData) -> dict[str, np.ndarray]:
    y = data.train.y.numpy()
    return {"forget": y[data.forget_positions.numpy()], "retain": y[data.retain_positions.numpy()],
            "test": data.test.y.numpy(), "retain_sample": y[data.retain_sample.numpy()]}


def _retain_sample_index(data: AuditData) -> np.ndarray:
    """Positions of the retain sample within the retain set."""
    return np.searchsorted(data.retain_positions.numpy(), data.retain_sample.numpy())


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example loss ``-log p_y`` from logits ``[K, n, C]``, computed stably."""
    return -np.take_along_axis(log_softmax(logits), labels[None, :, None], axis=-1)[..., 0]


def _stat(values: np.ndarray) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def accuracy_family(out: Outputs, data: AuditData, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-member FA, RA, TA and MIA-Efficacy (percent)."""
    labels = _labels(data)
    result = {key: accuracy_metrics.accuracy(getattr(out, split), labels[split])
              for key, split in (("FA", "forget"), ("RA", "retain"), ("TA", "test"))}
    result["MIA"] = mia.mia_efficacy_population(
        true_class_confidence(out.retain, labels["retain"]), true_class_confidence(out.test, labels["test"]),
        true_class_confidence(out.forget, labels["forget"]), seed=seed)
    return result


def margins(out: Outputs, data: AuditData) -> dict[str, np.ndarray]:
    labels = _labels(data)
    return {"forget": margin(out.forget, labels["forget"]),
            "retain": margin(out.retain[:, _retain_sample_index(data)], labels["retain_sample"]),
            "test": margin(out.test, labels["test"])}


def noise_floors(oracle: Outputs, oracle2: Outputs, data: AuditData) -> dict[str, Any]:
    """Retrain-vs-retrain values of F and KLoM: what a perfect method would score at this N."""
    labels = _labels(data)
    n = min(oracle.forget.shape[0], oracle2.forget.shape[0])
    phi_oracle, phi_oracle2 = phi(oracle.forget[:n], labels["forget"]), phi(oracle2.forget[:n], labels["forget"])
    eps = competition.epsilons(phi_oracle, phi_oracle2)
    quality = competition.forgetting_quality(eps, n)
    m1, m2 = margins(oracle, data), margins(oracle2, data)
    return {
        "competition_F": {"value": quality.F, "definition": competition.DEFINITION, "n_models": n,
                          "ceiling": quality.ceiling},
        "klom_p95": {split: klom.klom_p95(m2[split], m1[split]) for split in ("forget", "retain", "test")}
        | {"definition": klom.DEFINITION},
        "ulira_auc": {"value": 0.5, "definition": lira.DEFINITION, "note": "chance level (perfect unlearning)"},
    }


def ulira(shadow_unlearned: Population, shadow_in: torch.Tensor, shadow_out: torch.Tensor,
          data: AuditData) -> dict[str, Any]:
    """U-LiRA with two-fold cross-fitting over shadow pairs.

    Shadows come in complementary pairs (see :meth:`Scenario.shadow_masks`). Fold A's
    shadows fit the per-example in/out Gaussians and fold B's are attacked, then the
    other way round; scores of every (shadow model, forget example) pair are pooled.
    """
    members = len(shadow_unlearned)
    if members < MIN_SHADOWS:
        raise ExpungeError(f"U-LiRA needs at least {MIN_SHADOWS} shadow models (dozens recommended); got {members}")
    labels = _labels(data)
    x = data.train.x[data.forget_positions]
    phi_shadow = phi(shadow_unlearned.predict(x).cpu().numpy(), labels["forget"])  # [M, n_forget]
    in_mask = shadow_in[:, data.forget_positions].numpy()
    out_mask = shadow_out[:, data.forget_positions].numpy()
    pairs = (members + 1) // 2
    fold_a = np.arange(members) < 2 * (pairs // 2)
    scores, truth = [], []
    for fit, attack in ((fold_a, ~fold_a), (~fold_a, fold_a)):
        s = lira.ulira_scores(phi_shadow[attack], phi_shadow[fit], in_mask[fit], out_mask[fit])
        known = in_mask[attack] | out_mask[attack]
        scores.append(s[known])
        truth.append(in_mask[attack][known])
    metrics = lira.attack_metrics(np.concatenate(scores), np.concatenate(truth))
    return metrics | {"n_shadows": members}


def audit_population(unlearned: Outputs, oracle: Outputs, original: Outputs, data: AuditData,
                     floors: dict[str, Any], oracle_family: dict[str, np.ndarray],
                     seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every metric of an unlearned population, each with the oracle's value or noise floor.

    Returns ``(metrics, plots)``: metrics as ``name -> {value, oracle | noise_floor,
    definition, ...}``; plot data for the report.
    """
    labels = _labels(data)
    n = unlearned.forget.shape[0]
    fam = accuracy_family(unlearned, data, seed)
    metrics: dict[str, Any] = {}
    for key in ("FA", "RA", "TA"):
        value, std = _stat(fam[key])
        oracle_value, oracle_std = _stat(oracle_family[key])
        metrics[key] = {"value": value, "std": std, "oracle": oracle_value, "oracle_std": oracle_std,
                        "definition": accuracy_metrics.DEFINITIONS[key], "unit": "%"}
    value, std = _stat(fam["MIA"])
    oracle_value, oracle_std = _stat(oracle_family["MIA"])
    metrics["MIA"] = {"value": value, "std": std, "oracle": oracle_value, "oracle_std": oracle_std,
                      "definition": mia.DEFINITION, "unit": "%"}
    gaps = accuracy_metrics.gap_metrics({k: fam[k] for k in ("FA", "RA", "TA", "MIA")},
                                        {k: oracle_family[k] for k in ("FA", "RA", "TA", "MIA")})
    metrics["UA"] = {"value": gaps["UA_method"], "oracle": gaps["UA_oracle"], "definition": accuracy_metrics.DEFINITIONS["UA"], "unit": "%"}
    metrics["AvgGap"] = {"value": gaps["avg_gap"], "definition": accuracy_metrics.DEFINITIONS["avg_gap"], "unit": "pp"}
    metrics["ToW"] = {"value": gaps["tow"], "definition": accuracy_metrics.DEFINITIONS["tow"]}

    # NeurIPS 2023 competition: same N for both populations.
    n_common = min(n, oracle.forget.shape[0])
    phi_u = phi(unlearned.forget[:n_common], labels["forget"])
    phi_o = phi(oracle.forget[:n_common], labels["forget"])
    report = competition.competition_report(phi_o, phi_u, ra_unlearned=fam["RA"], ra_oracle=oracle_family["RA"],
                                            ta_unlearned=fam["TA"], ta_oracle=oracle_family["TA"])
    floor_f = floors["competition_F"]["value"]
    metrics["F"] = {"value": report["F"], "noise_floor": floor_f, "definition": competition.DEFINITION,
                    "n_models": report["N"], "ceiling": report["ceiling"]}
    metrics["competition_score"] = {"value": report["score"], "definition": "competition_score@neurips2023"}

    mu, mo = margins(unlearned, data), margins(oracle, data)
    for split in ("forget", "retain", "test"):
        metrics[f"KLoM_{split}_p95"] = {"value": klom.klom_p95(mu[split], mo[split]),
                                        "noise_floor": floors["klom_p95"][split], "definition": klom.DEFINITION}

    def loss_attack(out: Outputs) -> float:
        """AUC of the loss-threshold attack, forget (members) vs test (non-members), pooled over models."""
        return lira.loss_threshold_auc(_cross_entropy(out.forget, labels["forget"]),
                                       _cross_entropy(out.test, labels["test"]))

    metrics["loss_attack_auc"] = {"value": loss_attack(unlearned), "oracle": loss_attack(oracle),
                                  "definition": lira.DEFINITIONS["loss_attack"]}

    k = min(n, oracle.forget.shape[0], original.forget.shape[0])
    for split, attr in (("forget", "features_forget"), ("test", "features_test")):
        u_feat, o_feat, orig_feat = getattr(unlearned, attr), getattr(oracle, attr), getattr(original, attr)
        metrics[f"CKA_oracle_{split}"] = {
            "value": float(np.mean([representation.linear_cka(u_feat[i], o_feat[i]) for i in range(k)])),
            "definition": representation.DEFINITION}
        metrics[f"CKA_original_{split}"] = {
            "value": float(np.mean([representation.linear_cka(u_feat[i], orig_feat[i]) for i in range(k)])),
            "definition": representation.DEFINITION}

    def knn(out: Outputs) -> float:
        return float(np.mean([representation.knn_probe_accuracy(out.features_retain_sample[i], labels["retain_sample"],
                                                               out.features_forget[i], labels["forget"])
                              for i in range(out.forget.shape[0])]))

    metrics["kNN_forget_accuracy"] = {"value": knn(unlearned), "oracle": knn(oracle),
                                      "definition": representation.DEFINITIONS["knn_probe"], "unit": "%"}

    worst = np.argsort(-report["eps"], kind="stable")[:WORST_EXAMPLES]
    forget_ids = data.train.ids[data.forget_positions].numpy()
    roc_u = mia.confidence_roc(true_class_confidence(unlearned.forget, labels["forget"]).ravel(),
                               true_class_confidence(unlearned.test, labels["test"]).ravel())
    roc_o = mia.confidence_roc(true_class_confidence(oracle.forget, labels["forget"]).ravel(),
                               true_class_confidence(oracle.test, labels["test"]).ravel())
    plots = {
        "eps": [float(e) for e in report["eps"]],
        "worst_examples": [{"id": int(forget_ids[i]), "eps": float(report["eps"][i]),
                            "margins_unlearned": mu["forget"][:, i].tolist(),
                            "margins_oracle": mo["forget"][:, i].tolist()} for i in worst],
        "mia_roc": {"fpr": _thin(roc_u["fpr"]), "tpr": _thin(roc_u["tpr"]), "auc": float(roc_u["auc"]),
                    "oracle_fpr": _thin(roc_o["fpr"]), "oracle_tpr": _thin(roc_o["tpr"]),
                    "oracle_auc": float(roc_o["auc"])},
    }
    return metrics, plots


def _thin(values: np.ndarray, points: int = 200) -> list[float]:
    """At most ``points`` evenly spaced entries of a curve (keeps report.json small)."""
    values = np.asarray(values)
    if len(values) <= points:
        return [float(v) for v in values]
    index = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
    return [float(v) for v in values[index]]

"""What a rehearsal backend answers: a pure function of the request, so two backends compare.

The answer is seeded from a hash of the canonical request body, so typescript and rust give the
same detections for the same request. A profile or fault then makes rust a realistic rewrite:
numeric jitter (per call) and divergence (chosen by the same hash, so a request that diverges
always diverges the same way).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Literal, cast

LABELS = ("person", "car", "bicycle", "dog", "cat", "truck", "bus", "bird", "chair", "bottle")
Kind = Literal["label", "missing", "order", "status"]
KINDS: tuple[Kind, ...] = ("label", "missing", "order", "status")
DIVERGENCE = (*KINDS, "any")  # what a profile or fault may name; `any` picks one per request
VOLATILE = ("request_id", "timestamp", "processing_time_ms")
DIVERGED_STATUS = 422


def request_digest(body: Any) -> bytes:
    """SHA-256 of the body's canonical JSON: key order and whitespace do not change the answer."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def result_for(task: str, width: int, height: int, digest: bytes) -> dict[str, Any]:
    """The task's result for this request: labels, boxes and confidences from the digest."""
    rng = random.Random(digest)
    if task == "detect":
        detections: list[dict[str, Any]] = []
        for _ in range(rng.randint(2, 8)):
            w, h = rng.uniform(0.05, 0.5) * width, rng.uniform(0.05, 0.5) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            detections.append({"label": rng.choice(LABELS),
                               "confidence": round(rng.uniform(0.3, 0.99), 4),
                               "box": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)]})
        detections.sort(key=lambda d: -d["confidence"])
        return {"detections": detections}
    if task == "segment":
        masks: list[dict[str, Any]] = [
            {"label": rng.choice(LABELS), "confidence": round(rng.uniform(0.3, 0.99), 4),
             "area": rng.randint(100, max(101, width * height // 4))}
            for _ in range(rng.randint(2, 6))]
        masks.sort(key=lambda m: -m["confidence"])
        return {"masks": masks}
    if task == "embed":
        return {"dimensions": 768, "embedding": [round(rng.uniform(-1, 1), 4) for _ in range(8)]}
    labels = rng.sample(LABELS, 3)
    scores = sorted((round(rng.uniform(0.05, 0.99), 4) for _ in labels), reverse=True)
    top = [{"label": label, "score": score} for label, score in zip(labels, scores, strict=True)]
    return {"label": top[0]["label"], "score": top[0]["score"], "top": top}


def divergence_for(digest: bytes, rate: float, kind: str) -> Kind | None:
    """Whether (and how) this request diverges: the same request always gets the same answer."""
    if rate <= 0 or int.from_bytes(digest[8:16], "big") / 2**64 >= rate:
        return None
    # `kind` is checked where it is configured (profile, faults)
    return KINDS[digest[16] % len(KINDS)] if kind == "any" else cast(Kind, kind)


def diverge(task: str, result: dict[str, Any], kind: Kind, digest: bytes) -> bool:
    """Change `result` the way a buggy rewrite would; False where the kind does not apply.

    label: one label differs; missing: one field is absent; order: the list comes reversed.
    (`status` is the server's to apply.) Embeddings carry no label.
    """
    items: list[Any] = (result.get("detections") or result.get("masks") or result.get("top")
             or result.get("embedding") or [])
    index = digest[17] % len(items) if items else 0
    if kind == "label":
        if task == "classify":
            result["label"] = _other_label(result["label"], digest)
            return True
        if items and isinstance(items[index], dict) and "label" in items[index]:
            item = items[index]
            item["label"] = _other_label(item["label"], digest)
            return True
        return False
    if kind == "missing":
        if task == "classify":
            del result["score"]
        elif task == "embed":
            del result["dimensions"]
        elif items:
            del items[index]["confidence"]
        else:
            return False
        return True
    if kind == "order" and len(items) >= 2:
        items.reverse()
        return True
    return False


def _other_label(label: str, digest: bytes) -> str:
    at = LABELS.index(label) if label in LABELS else 0
    return LABELS[(at + 1 + digest[18] % (len(LABELS) - 1)) % len(LABELS)]


def jitter(value: Any, amplitude: float, rng: random.Random) -> Any:
    """Every float scaled by 1 +- `amplitude` (uniform), as a rewrite's float maths would."""
    if amplitude <= 0:
        return value
    if type(value) is float:
        return round(value * (1 + rng.uniform(-amplitude, amplitude)), 4)
    if isinstance(value, dict):
        return {k: jitter(v, amplitude, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [jitter(v, amplitude, rng) for v in value]
    return value

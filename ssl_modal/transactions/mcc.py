"""MCC (or any categorical code) embeddings as a product: table export, nearest neighbours, a 2-D map.

`mcc_embeddings(source, field="mcc")` works on a trained transactions model (its embedding table) or a
`SkipGramEmbeddings`; both give a DataFrame (code, count, vector) without the reserved PAD/MASK/UNK ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.transactions.skipgram import RESERVED, SkipGramEmbeddings

# ISO 18245 merchant category code ranges (first code of each range, name)
ISO18245_RANGES = [
    (1, "agricultural services"),
    (1500, "contracted services"),
    (3000, "airlines"),
    (3300, "car rental"),
    (3500, "lodging"),
    (4000, "transportation services"),
    (4800, "utility services"),
    (5000, "retail outlets"),
    (5600, "clothing stores"),
    (5700, "miscellaneous stores"),
    (7300, "business services"),
    (8000, "professional services / organisations"),
    (9000, "government services"),
]


def iso18245_range(code) -> str:
    """The ISO 18245 range name of a 4-digit MCC, or "not an ISO MCC" for anything else."""
    try:
        value = int(float(str(code)))
    except ValueError:
        return "not an ISO MCC"
    if not 1 <= value <= 9999:
        return "not an ISO MCC"
    name = ISO18245_RANGES[0][1]
    for start, label in ISO18245_RANGES:
        if value >= start:
            name = label
    return name


def mcc_embeddings(source, field: str = "mcc") -> pd.DataFrame:
    """DataFrame (code, count, vector) of categorical `field`, most frequent first."""
    if isinstance(source, SkipGramEmbeddings):
        if field != source.field:
            raise KeyError(f"these skip-gram embeddings are for '{source.field}', not '{field}'")
        vocab, counts, vectors = source.vocabulary, source.counts, source.vectors
    else:
        pre = getattr(source, "preprocessor", None)
        if pre is None:
            raise ValueError("mcc_embeddings needs a model with a fitted preprocessor or SkipGramEmbeddings")
        vectors = source.encoder.embed.embedding_of(field).weight.detach().cpu().float().numpy()
        vocab = pre.vocabulary(field)
        saved = (source.spec.config.get("field_counts") or {}).get(field) if source.spec else None
        counts = saved if saved is not None else [0] * len(vocab)
    ids = np.arange(RESERVED, len(vocab))
    frame = pd.DataFrame(
        {
            "code": [vocab[i] for i in ids],
            "count": [int(counts[i]) for i in ids],
            "vector": list(np.asarray(vectors)[ids]),
        }
    )
    return frame.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def nearest_mccs(source, code, k: int = 5, field: str = "mcc") -> pd.DataFrame:
    """The `k` codes whose vectors are most cosine-similar to `code`'s: DataFrame (code, similarity, count)."""
    table = source if isinstance(source, pd.DataFrame) else mcc_embeddings(source, field)
    keys = table["code"].astype(str).tolist()
    if str(code) not in keys:
        raise KeyError(f"code {code!r} is not in the '{field}' vocabulary ({len(keys)} codes, e.g. {keys[:5]})")
    vectors = np.stack(table["vector"].to_numpy()).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    i = keys.index(str(code))
    sims = vectors @ vectors[i]
    top = [j for j in np.argsort(-sims, kind="stable") if j != i][:k]  # never the code itself
    return pd.DataFrame(
        {"code": table["code"].to_numpy()[top], "similarity": sims[top], "count": table["count"].to_numpy()[top]}
    )


def plot_mcc_map(
    table: pd.DataFrame, png_path: str | Path, title: str, method: str = "pca", annotate: int = 20, seed: int = 0
) -> Path:
    """2-D map (PCA or t-SNE) of the code vectors, coloured by ISO 18245 range (or by code when the codes
    are not ISO MCCs), the `annotate` most frequent codes labelled. Saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vectors = np.stack(table["vector"].to_numpy()).astype(np.float64)
    if len(vectors) < 3:
        raise ValueError(f"an MCC map needs at least 3 codes, found {len(vectors)}")
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(30, len(vectors) - 1), random_state=seed, init="pca").fit_transform(vectors)
    elif method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(2, random_state=seed).fit_transform(vectors)
    else:
        raise ValueError(f"method: expected 'pca' or 'tsne', found '{method}'")
    groups = [iso18245_range(c) for c in table["code"]]
    if all(g == "not an ISO MCC" for g in groups):
        groups = [str(c) for c in table["code"]] if len(table) <= 20 else groups
    fig, ax = plt.subplots(figsize=(8, 6))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(sorted(set(groups))):
        sel = np.array([g == name for g in groups])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=cmap(i % 20), label=name)
    for j in range(min(annotate, len(table))):
        ax.annotate(str(table["code"].iloc[j]), xy[j], fontsize=7, alpha=0.8)
    ax.legend(fontsize=7, loc="best", ncol=1 if len(set(groups)) < 12 else 2)
    ax.set_title(title)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path

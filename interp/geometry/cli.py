"""``interp geometry``: layer profile of saved representations.

    interp geometry --reps reps.safetensors [--labels labels.npy] --out DIR

``reps.safetensors`` holds one (N, D) tensor per layer; layers are ordered
by the natural sort of their keys (``layer.2`` before ``layer.10``). Labels
(optional) come from ``.npy``, ``.txt`` (one per line), ``.csv`` (a column
named label/labels/class/y/target, else the only or last column) or
``.safetensors`` (the only tensor, or the one named ``labels``).

Writes ``DIR/profile.csv``, ``DIR/id_profile.png`` and (with labels)
``DIR/ari_profile.png``, and prints the table (rich). typer and rich are
imported only inside the functions.
"""

from pathlib import Path
from typing import Any, Optional

__all__ = ["register", "run_profile", "load_reps", "load_labels"]


def load_reps(path: Path) -> dict:
    """Layer name -> (N, D) tensor from a safetensors file, in natural key order."""
    from safetensors.torch import load_file

    from geometry._utils import natural_key
    from geometry.errors import GeometryInputError

    path = Path(path)
    if not path.exists():
        raise GeometryInputError(f"--reps file {path} does not exist.")
    tensors = load_file(str(path))
    if not tensors:
        raise GeometryInputError(f"{path} holds no tensors; save one (N, D) tensor per layer.")
    out = {}
    for key in sorted(tensors, key=natural_key):
        t = tensors[key]
        if t.ndim != 2:
            raise GeometryInputError(
                f"tensor {key!r} in {path} has shape {tuple(t.shape)}; each layer must be (N points, D features) "
                f"(pool or select token positions first)."
            )
        out[key] = t
    return out


def load_labels(path: Path):
    """Labels from .npy / .txt / .csv / .safetensors (see the module docstring)."""
    import numpy as np

    from geometry.errors import GeometryInputError

    path = Path(path)
    if not path.exists():
        raise GeometryInputError(f"--labels file {path} does not exist.")
    suf = path.suffix.lower()
    if suf == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suf == ".txt":
        lines = path.read_text().splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        arr = np.array([ln.strip() for ln in lines])
    elif suf == ".csv":
        import pandas as pd

        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
        names = [str(v).strip().lower() for v in df.iloc[0]]
        wanted = ("label", "labels", "class", "y", "target")
        header = any(n in wanted for n in names) or (df.shape[0] > 1 and not any(_numeric(v) for v in df.iloc[0])
                                                     and all(_numeric(v) for v in df.iloc[1]))
        col = df.shape[1] - 1
        if header:
            hits = [i for i, n in enumerate(names) if n in wanted]
            col = hits[0] if hits else col
            df = df.iloc[1:]
        arr = df.iloc[:, col].str.strip().to_numpy()
    elif suf == ".safetensors":
        from safetensors.numpy import load_file

        t = load_file(str(path))
        key = "labels" if "labels" in t else ("label" if "label" in t else None)
        if key is None:
            if len(t) != 1:
                raise GeometryInputError(f"{path} has tensors {sorted(t)}; name the labels tensor 'labels'.")
            key = next(iter(t))
        arr = t[key]
    else:
        raise GeometryInputError(f"unsupported labels file {path.name}: use .npy, .txt, .csv or .safetensors.")
    arr = np.asarray(arr).reshape(-1) if np.asarray(arr).ndim == 2 and 1 in np.asarray(arr).shape else np.asarray(arr)
    if arr.dtype.kind in "US" and all(_numeric(v) for v in arr[: min(len(arr), 1000)]):
        as_f = arr.astype(float)
        arr = as_f.astype(np.int64) if np.all(as_f == np.round(as_f)) else as_f
    return arr


def _numeric(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def run_profile(reps_by_layer: dict, labels: Any = None, out_dir: Optional[Path] = None, console: Any = None,
                **profile_kwargs):
    """Profile + layer choice + (optional) files + a rich table; returns ``(df, chosen_layers)``.

    The shared entry point of ``interp geometry`` and ``interp id-profile``.
    """
    from geometry.profile import layer_profile, save_profile, select_layers_by_id

    df = layer_profile(reps_by_layer, labels, **profile_kwargs)
    chosen = select_layers_by_id(df)
    paths = save_profile(df, out_dir, chosen) if out_dir is not None else []
    if console is not False:
        print_profile(df, chosen, paths, console)
    return df, chosen


def print_profile(df, chosen, paths=(), console: Any = None) -> None:
    """Print the profile as a rich table (chosen layers marked with *)."""
    import math

    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="Representation geometry by layer", show_lines=False)
    cols = [("layer", "layer"), ("ID", "id"), ("Gride ID", "id_gride"), ("clusters", "n_clusters"),
            ("ARI", "ari"), ("homog.", "homogeneity"), ("label ovl", "label_overlap"), ("ovl next", "data_overlap_next")]
    for title, _ in cols:
        t.add_column(title, justify="left" if title == "layer" else "right", no_wrap=True)
    chosen_s = {str(c) for c in chosen}
    for _, row in df.iterrows():
        cells = []
        for title, key in cols:
            v = row[key]
            if key == "layer":
                cells.append(f"{v} *" if str(v) in chosen_s else str(v))
            elif key == "id_gride":
                cells.append(f"{v:.2f} ± {row['id_gride_err']:.2f}")
            elif key == "n_clusters":
                cells.append(str(int(v)))
            else:
                cells.append("-" if (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}" if key != "id" else f"{v:.2f}")
        t.add_row(*cells)
    console.print(t)
    if chosen:
        console.print(f"ID-profile choice (relative ID minimum after the first peak): {', '.join(map(str, chosen))}")
    else:
        console.print("ID-profile choice: no relative ID minimum after a first peak (profile has no peak-then-dip).")
    n_dup = df.attrs.get("n_duplicates_removed", 0)
    if n_dup:
        console.print(f"[yellow]{n_dup} duplicate points were removed before the analysis.[/yellow]")
    for p in paths:
        console.print(f"wrote {p}")


def register(app: "Any") -> None:
    """Add the ``geometry`` command to the ``interp`` typer app."""
    import typer

    from steering.cli_common import opt_device, opt_out

    @app.command("geometry")
    def geometry(
        reps: Path = typer.Option(..., "--reps", help="safetensors file: one (N, D) tensor per layer"),
        out: Path = opt_out("geometry", help="output directory (profile.csv, *.png)"),
        labels: Optional[Path] = typer.Option(None, "--labels", help="labels: .npy/.txt/.csv/.safetensors"),
        k: int = typer.Option(30, "--k", help="neighbours for the label/data overlaps"),
        maxk: int = typer.Option(100, "--maxk", help="neighbours stored per layer (ADP depends on it)"),
        z: float = typer.Option(1.65, "--z", help="ADP merging threshold Z"),
        density: str = typer.Option("pak", "--density", help="ADP density: pak or knn"),
        id_estimator: str = typer.Option("twonn", "--id-estimator", help="ID column: twonn or gride"),
        device: Optional[str] = opt_device(help="device for the kNN search: cpu, cuda, cuda:1 (default: cuda when "
                                                "available, else cpu)"),
        precision: str = typer.Option("auto", "--precision", help="kNN candidate precision: auto/bf16/float32/float64"),
    ):
        """Layer profile of saved representations: ID, ADP clusters, ARI, overlaps (+ CSV and PNG)."""
        from geometry.errors import GeometryInputError

        try:
            layers = load_reps(reps)
            lab = load_labels(labels) if labels is not None else None
            run_profile(layers, lab, out, overlap_k=k, maxk=maxk, Z=z, density=density,
                        id_estimator=id_estimator, device=device or "auto", precision=precision)
        except GeometryInputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)

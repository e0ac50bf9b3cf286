"""layer_profile, the ID-based layer choice, plots and the `interp geometry` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gaussian_mixture

import geometry as geo

ROOT = Path(__file__).resolve().parents[2]


def layers(n=500, seed=0):
    """Class structure that emerges then fades: noisy -> clustered -> blurred."""
    X, y = gaussian_mixture(n, 12, 3, sep=30.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    noise = rng.standard_normal((n, 48))
    reps = {
        "layer.0": np.hstack([0.1 * X, 3 * noise]).astype(np.float32),
        "layer.1": np.hstack([X, 1.0 * noise]).astype(np.float32),
        "layer.2": np.hstack([X, 0.2 * noise]).astype(np.float32),
        "layer.10": np.hstack([0.3 * X, 2 * noise]).astype(np.float32),
    }
    return reps, y


@pytest.mark.parametrize(
    "ids, want",
    [
        ([5, 9, 14, 11, 7, 6.5, 8, 12, 11], [4, 5]),  # first peak at 2, valley 4-5 (6.5 within 10% of the drop)
        ([5, 9, 14, 11, 7, 9, 15, 6, 5], [4]),  # the valley before the second peak, not the global minimum
        ([14, 10, 8, 9, 12], [2]),  # profile starting at its peak
        ([3, 4, 5, 6, 7], []),  # monotonic: no peak then dip
        ([5, 9, 9, 9, 6, 7], [4]),  # plateau peak
        ([5, 9, 9.1, 8.95, 12, 4, 5], [5]),  # wiggle below the prominence threshold is not a peak
    ],
)
def test_select_layers_by_id(ids, want):
    assert geo.select_layers_by_id(ids) == want
    names = [f"L{i}" for i in range(len(ids))]
    assert geo.select_layers_by_id(ids, layers=names) == [names[i] for i in want]


def test_layer_choice_needs_a_relative_minimum_not_a_decline_to_the_end():
    """Hand-made: a profile that only declines after its peak has no relative minimum (it used to
    return the last layer)."""
    ids = [5, 9, 14, 11, 7, 6]
    got, why = geo.select_layers_by_id(ids, return_reason=True)
    assert got == [] and "only declines" in why
    assert geo.select_layers_by_id([5, 9, 14, 11, 7, 6, 8]) == [5]      # the same with a rise after it


@pytest.mark.parametrize("err, want", [(None, [4]), (0.05, [4]), (0.5, [])])
def test_layer_choice_rejects_dips_within_the_error_bars(err, want):
    """Peak 14 at layer 2, dip to 13.2 at layer 4 (0.8 below), second peak 14.5. With standard errors
    0.5 the authors' 3x error bars overlap (3 * (0.5 + 0.5) = 3 > 0.8): no minimum."""
    ids = [5, 9, 14, 13.5, 13.2, 14.5, 10]
    errors = None if err is None else [err] * len(ids)
    got, why = geo.select_layers_by_id(ids, errors=errors, return_reason=True)
    assert got == want and (("error bars" in why) == (want == []))


def test_layer_choice_rise_after_the_minimum_must_beat_the_error_bars():
    ids, errors = [5, 14, 8, 8.2], [0.2] * 4
    assert geo.select_layers_by_id(ids) == [2, 3]                         # exact IDs: 8 < 8.2 is a minimum (+ tolerance)
    assert geo.select_layers_by_id(ids, errors=errors) == []              # 0.2 rise < 3 * (0.2 + 0.2)
    import pandas as pd

    df = pd.DataFrame({"layer": list("abcd"), "id": ids, "id_err": errors})
    assert geo.select_layers_by_id(df) == [] and geo.select_layers_by_id(df, err_column=None) == ["c", "d"]


def test_layer_profile_table_and_files(tmp_path):
    reps, y = layers()
    df = geo.layer_profile(reps, labels=y, maxk=50, device="cpu")
    assert list(df["layer"]) == list(reps)
    assert list(df.columns) == ["layer", "n_points", "id", "id_twonn", "id_gride", "id_gride_err", "n_clusters",
                                "ari", "homogeneity", "label_overlap", "data_overlap_next"]
    assert np.isnan(df["data_overlap_next"].iloc[-1]) and df["data_overlap_next"].iloc[:-1].between(0, 1).all()
    # the clustered middle layer: ADP finds the 3 classes, overlap with labels is perfect
    mid = df.set_index("layer").loc["layer.2"]
    assert mid["n_clusters"] == 3 and mid["ari"] > 0.95 and mid["label_overlap"] == 1.0
    assert df["id"].equals(df["id_twonn"])
    # values agree with the functional API
    nb = geo.knn(reps["layer.2"], 50, device="cpu")
    assert mid["id_twonn"] == pytest.approx(geo.compute_id_2nn(nb).id, rel=1e-12)
    paths = geo.save_profile(df, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["ari_profile.png", "id_profile.png", "profile.csv"]
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import pandas as pd

    back = pd.read_csv(tmp_path / "out" / "profile.csv")
    assert back.shape == df.shape


def test_layer_profile_without_labels_and_gride_column(tmp_path):
    reps, _ = layers(300, seed=3)
    df = geo.layer_profile(reps, maxk=40, id_estimator="gride", gride_n1=2, density="knn", device="cpu",
                           out_dir=tmp_path)
    assert df["ari"].isna().all() and df["label_overlap"].isna().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id_profile.png", "profile.csv"]  # no labels: no ARI plot
    assert df["id"].equals(df["id_gride"])


def test_profile_drops_points_duplicated_in_any_layer():
    reps, y = layers(300, seed=4)
    reps["layer.1"][5] = reps["layer.1"][6]
    with pytest.warns(UserWarning, match="1 points duplicate"):
        df = geo.layer_profile(reps, labels=y, maxk=30, device="cpu")
    assert df.attrs["n_duplicates_removed"] == 1 and (df["n_points"] == 299).all()


def _app():
    typer = pytest.importorskip("typer")
    from interp.geometry.cli import register

    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps typer in multi-command mode, as in `interp`
    def noop():
        pass

    return app


@pytest.mark.parametrize("fmt", ["npy", "txt", "csv", "safetensors"])
def test_cli_geometry(tmp_path, fmt):
    from safetensors.numpy import save_file
    from typer.testing import CliRunner

    reps, y = layers(240, seed=5)
    save_file({k: v for k, v in reps.items()}, str(tmp_path / "reps.safetensors"))
    lab = tmp_path / f"labels.{fmt}"
    names = np.array(["cat", "dog", "eel"])[y]
    if fmt == "npy":
        np.save(lab, y)
    elif fmt == "txt":
        lab.write_text("\n".join(names) + "\n")
    elif fmt == "csv":
        lab.write_text("id,label\n" + "\n".join(f"{i},{n}" for i, n in enumerate(names)) + "\n")
    else:
        save_file({"labels": y.astype(np.int64)}, str(lab))
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), ["geometry", "--reps", str(tmp_path / "reps.safetensors"), "--labels", str(lab),
                                      "--out", str(out), "--k", "10", "--maxk", "40", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = res.output
    # natural layer order: layer.0, layer.1, layer.2, layer.10
    pos = [text.index(f"layer.{i} ") if f"layer.{i} " in text else text.index(f"layer.{i}") for i in (0, 1, 2, 10)]
    assert pos == sorted(pos)
    assert (out / "profile.csv").exists() and (out / "id_profile.png").exists() and (out / "ari_profile.png").exists()
    import pandas as pd

    df = pd.read_csv(out / "profile.csv")
    assert list(df["layer"]) == ["layer.0", "layer.1", "layer.2", "layer.10"]
    assert df["ari"].notna().all()


def test_cli_bad_labels_is_a_clean_error(tmp_path):
    from safetensors.numpy import save_file
    from typer.testing import CliRunner

    reps, y = layers(120, seed=6)
    save_file(reps, str(tmp_path / "reps.safetensors"))
    np.save(tmp_path / "labels.npy", y[:-3])
    res = CliRunner().invoke(_app(), ["geometry", "--reps", str(tmp_path / "reps.safetensors"), "--labels",
                                      str(tmp_path / "labels.npy"), "--out", str(tmp_path / "o"), "--maxk", "20"])
    assert res.exit_code == 2
    assert "length 117 but the data have 120 points" in res.output


def test_run_profile_entry_point_for_id_profile_command(tmp_path):
    from interp.geometry.cli import run_profile

    reps, y = layers(200, seed=7)
    df, chosen = run_profile({k: torch.as_tensor(v) for k, v in reps.items()}, y, tmp_path, console=False, maxk=30,
                             device="cpu")
    assert len(df) == 4 and isinstance(chosen, list)
    assert (tmp_path / "profile.csv").exists()


def test_import_is_light():
    code = (
        "import sys, geometry, interp.geometry, interp.geometry.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'transformer_lens', 'nnsight', 'sklearn', 'pandas', "
        "'matplotlib', 'typer', 'rich') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from geometry import knn, layer_profile\n"
        "heavy = [m for m in ('transformers', 'transformer_lens', 'nnsight', 'sklearn', 'pandas', 'matplotlib') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})

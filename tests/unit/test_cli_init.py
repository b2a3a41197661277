"""`labkit init`: where the series comes from, what is copied, and that nothing is overwritten."""

from pathlib import Path

from labkit.cli import init_cmd
from labkit.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _series(root: Path) -> Path:
    (root / "notebooks" / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "notebooks" / "00_start_here.ipynb").write_text("{}")
    (root / "notebooks" / "README.md").write_text("# read me")
    (root / "notebooks" / "scratch.sqlite").write_text("left by a run")
    (root / "notebooks" / ".ipynb_checkpoints" / "00_start_here-checkpoint.ipynb").write_text("{}")
    (root / "instructor" / "masters").mkdir(parents=True)
    (root / "instructor" / "masters" / "00_start_here.ipynb").write_text("{'solution': 1}")
    return root


def test_the_installed_copy_comes_first_then_the_checkout(tmp_path):
    packaged = _series(tmp_path / "site-packages" / "labkit" / "_series")
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    assert init_cmd.series_root(packaged, checkout) == packaged
    assert init_cmd.series_root(tmp_path / "nowhere", checkout) == checkout
    assert init_cmd.series_root(tmp_path / "nowhere", tmp_path / "not-a-checkout") is None


def test_this_checkout_is_found_when_labkit_runs_from_it():
    # The unit tests import labkit from the checkout (editable install or PYTHONPATH).
    assert init_cmd.series_root(Path("/nonexistent"), REPO) == REPO


def test_copies_notebooks_only_by_default_and_skips_checkpoints_and_data(tmp_path):
    source = _series(tmp_path / "series")
    written, kept = init_cmd.copy_series(source, tmp_path / "course", ("notebooks",))
    names = sorted(p.relative_to(tmp_path / "course").as_posix() for p in written)
    assert names == ["notebooks/00_start_here.ipynb", "notebooks/README.md"]
    assert kept == []
    assert not (tmp_path / "course" / "instructor").exists()


def test_a_students_file_is_never_overwritten(tmp_path, monkeypatch, capsys):
    source = _series(tmp_path / "series")
    monkeypatch.setattr(init_cmd, "series_root", lambda: source)
    mine = tmp_path / "course" / "notebooks" / "00_start_here.ipynb"
    mine.parent.mkdir(parents=True)
    mine.write_text("my answers")

    assert main(["init", str(tmp_path / "course"), "--instructor"]) == 0

    assert mine.read_text() == "my answers"
    assert (tmp_path / "course" / "notebooks" / "README.md").is_file()
    assert (tmp_path / "course" / "instructor" / "masters" / "00_start_here.ipynb").is_file()
    out = capsys.readouterr().out
    assert "copied 2 file(s)" in out
    assert "kept 1 file(s)" in out
    assert str(mine) in out
    assert "labkit lab" in out


def test_no_series_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(init_cmd, "series_root", lambda: None)
    assert main(["init", str(tmp_path / "course")]) == 1
    err = capsys.readouterr().err
    assert "has no notebook series" in err
    assert "pip install" in err
    assert not (tmp_path / "course").exists()


def test_a_file_for_dir_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("")
    assert main(["init", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_lab_without_a_notebooks_folder_points_to_init(tmp_path, monkeypatch, capsys):
    from labkit.cli import lab_cmd

    monkeypatch.chdir(tmp_path)
    assert lab_cmd._notebooks_dir(None) == tmp_path.resolve()
    assert "labkit init DIR" in capsys.readouterr().err
    (tmp_path / "notebooks").mkdir()
    assert lab_cmd._notebooks_dir(None) == (tmp_path / "notebooks").resolve()
    assert capsys.readouterr().err == ""

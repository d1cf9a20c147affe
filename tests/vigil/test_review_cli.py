"""`vigil feedback` and `vigil calibrate` on real SQLite and PostgreSQL databases, read with `vigil sql`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from tests.support.sql import reader
from tests.support.web import bulk_detections, seed_review
from vigil.cli import cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def vigil(url: str, *args: str, config: Path | None = None) -> Result:
    extra = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*extra, *args], env={"VIGIL_DATABASE__URL": url}, catch_exceptions=False)


def execute(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_feedback_judges_the_best_window_and_is_readable_with_vigil_sql(db_url: str, tmp_path: Path) -> None:
    seeded = seed_review(db_url, tmp_path)
    result = vigil(db_url, "feedback", str(seeded.media_id), "person", "wrong", "--note", "a coat on a hook")
    assert result.exit_code == 0, result.output
    assert f"wrong: person matched in media {seeded.media_id} window 3 (score 0.930" in result.output
    again = vigil(db_url, "feedback", str(seeded.media_id), "person", "right")  # the latest verdict wins
    assert again.exit_code == 0
    query = "SELECT verdict, target_present, target, window_index, origin FROM feedback_v"
    if db_url.startswith("postgresql"):  # `vigil sql` reads as the reader role there
        with reader(db_url) as readonly_url:
            out = CliRunner().invoke(
                cli, ["sql", "--format", "csv", query],
                env={"VIGIL_DATABASE__URL": db_url, "VIGIL_DATABASE__READONLY_URL": readonly_url},
            )  # fmt: skip
    else:
        out = vigil(db_url, "sql", "--format", "csv", query)
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[1:] == ["right,1,person,3,cli"]
    for args, message in [
        (("999", "person", "right"), "media 999 has no detections of target 'person'"),
        ((str(seeded.media_id), "ghost", "right"), "no target named 'ghost'"),
    ]:
        bad = vigil(db_url, "feedback", *args)
        assert bad.exit_code == 2 and message in bad.output


def judge(url: str, target: str, *, present_above: float) -> None:
    """Verdicts on every window of `target`: present exactly when its score is above `present_above`."""
    execute(
        url,
        "INSERT INTO feedback (detection_id, verdict, origin, created_at, updated_at) "
        f"SELECT d.id, CASE WHEN (d.p_yes > {present_above}) = d.matched THEN 'right' ELSE 'wrong' END, "
        "'cli', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM detections d JOIN targets t ON t.id = d.target_id "
        f"WHERE t.name = '{target}'",
    )


def test_calibrate_fits_prints_and_applies(db_url: str, tmp_path: Path) -> None:
    seed_review(db_url, tmp_path)
    bulk_detections(db_url, 400)  # uniform scores; present above 0.8 means the answer is 0.8
    judge(db_url, "van", present_above=0.8)
    result = vigil(db_url, "calibrate", "van", "--precision", "0.95")
    assert result.exit_code == 0, result.output
    fitted = float(result.output.split("fitted ")[1].split()[0])
    assert 0.78 < fitted <= 0.8
    assert "score histogram (+ present, - absent)" in result.output and "0.9-1.0 |+" in result.output
    applied = vigil(db_url, "calibrate", "van", "--precision", "0.95", "--apply")
    assert applied.exit_code == 0 and f"threshold of van set to {fitted:.3f}" in applied.output
    ((stored,),) = execute(db_url, "SELECT threshold FROM targets WHERE name = 'van'")
    assert stored == pytest.approx(fitted, abs=0.0005)


def test_calibrate_refuses_with_too_few_verdicts_and_for_a_file_owned_target(
    db_url: str, tmp_path: Path
) -> None:
    seeded = seed_review(db_url, tmp_path)
    assert vigil(db_url, "feedback", str(seeded.media_id), "person", "wrong").exit_code == 0
    refused = vigil(db_url, "calibrate", "person")
    assert refused.exit_code == 2
    assert "needs at least 5 labels of each kind, has 0 present and 1 absent" in refused.output
    bulk_detections(db_url, 400)
    judge(db_url, "van", present_above=0.8)
    config = tmp_path / "vigil.toml"
    config.write_text('[[targets]]\nname = "van"\ndescription = "a white delivery van"\nthreshold = 0.6\n')
    owned = vigil(db_url, "calibrate", "van", "--apply", config=config)
    assert owned.exit_code == 2
    assert "target 'van' is set in the settings file: change it there" in owned.output
    assert "threshold = 0.7" in owned.output  # the line to write
    assert execute(db_url, "SELECT threshold FROM targets WHERE name = 'van'") == [(0.6,)]


def test_calibrate_reads_labels_of_files_in_the_database(sqlite_url: str, tmp_path: Path) -> None:
    seeded = seed_review(sqlite_url, tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n{seeded.clip},yes\n")
    refused = vigil(sqlite_url, "calibrate", "person", "--labels", str(labels))
    assert refused.exit_code == 2 and "has 1 present and 0 absent" in refused.output  # the clip's best: 0.93
    for bad, message in [
        ("path,label\nmissing.mp4,yes\n", "missing.mp4: no such file"),
        (f"{seeded.clip},yes\n{seeded.clip},maybe\n", "labels.csv:2: label must be yes/no"),
        (f"{seeded.clip}\n", "expected path,label"),
    ]:
        labels.write_text(bad)
        result = vigil(sqlite_url, "calibrate", "person", "--labels", str(labels))
        assert result.exit_code == 2 and message in result.output, result.output


def test_calibrate_scores_labelled_files_not_in_the_database(
    sqlite_url: str, tmp_path: Path, tiny_llava: Path
) -> None:
    from workers.testing.clips import write_clip_h264

    seed_review(sqlite_url, tmp_path)
    for name in ("a.mp4", "b.mp4"):
        write_clip_h264(tmp_path / name, seconds=1, fps=8, size=(64, 48), gop=8)
    labels = tmp_path / "labels.csv"
    labels.write_text("a.mp4,yes\nb.mp4,no\n")  # paths relative to the CSV
    result = CliRunner().invoke(
        cli,
        ["calibrate", "person", "--labels", str(labels)],
        env={"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_MODEL__ID": str(tiny_llava),
             "VIGIL_MODEL__FRAMES_PER_WINDOW": "4"},
    )  # fmt: skip
    assert "analysing 2 file(s) not in the database" in result.output, result.output
    # Scored with the model on the spot, then refused honestly: two labels are not enough to fit.
    assert result.exit_code == 2 and "has 1 present and 1 absent" in result.output

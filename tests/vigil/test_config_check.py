"""`vigil config check` is the truth: every problem a command would meet later is reported by the check.

Each case is a settings file a user could write; the check must refuse it with the key named, in one line
per problem, and no traceback. Missing paths are warnings that name them, and do not fail the check.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from vigil.cli import cli
from vigil.config.checks import check_webhook_secret

GOOD = """
[[watch.sources]]
name = "cam1"
path = "{folder}"
[[targets]]
name = "van"
description = "a white delivery van"
[[alerts.channels]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/vigil"
[[alerts.rules]]
name = "r"
targets = ["van"]
sources = ["cam1"]
channels = ["ops"]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cams").mkdir()
    return tmp_path


def check(workdir: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    (workdir / "vigil.toml").write_text(text.replace("{folder}", str(workdir / "cams")))
    return CliRunner().invoke(cli, ["config", "check"], env=env)


def test_good_settings_are_ok(workdir: Path) -> None:
    gate = (
        'path = "{folder}"\nstatic_gate = 8.5\nkeep_days = 7\nmin_free = "4.5GiB"\nurl = "rtsp://cam:554/s"'
    )
    gate += '\nusername = "viewer"\npassword_env = "CAM_PW"\nsegment_s = 60'
    result = check(workdir, GOOD.replace('path = "{folder}"', gate) + '[retention]\nmin_free = "10%"\n')
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: vigil.toml: 1 source(s), 1 target(s), 1 rule(s)")
    assert "warning" not in result.output


URL = '"https://hooks.example.com/vigil"'
RULE_END = 'channels = ["ops"]'
HOOK = 'kind = "webhook"'
DUPE = "target names must be unique, repeated: van"
MOVED_OFFLINE = 'moved: write an [[alerts.rules]] with on = "camera_offline", after_s and channels'
RULE_TARGETS = (
    'vigil.toml: alerts.rules[r]: targets: only for detection rules (this one has on = "camera_offline")'
)
BAD = [
    (
        'targets = ["van"]',
        'targets = ["ghost"]',
        "vigil.toml: alerts.rules[r].targets: no target named ghost in the",
    ),
    (RULE_END, 'channels = ["pager"]', "vigil.toml: alerts.rules[r].channels: no channel named pager"),
    (RULE_END, f'{RULE_END}\nhours = "25-99"', "vigil.toml: alerts.rules[r].hours: '25-99'"),
    (
        RULE_END,
        f'{RULE_END}\ntimezone = "Mars/Olympus"',
        "vigil.toml: alerts.rules[r].timezone: 'Mars/Olympus'",
    ),
    (RULE_END, f'{RULE_END}\nmessage = "{{target.__class__}}"', "vigil.toml: alerts.rules[r].message"),
    (
        URL,
        '"not a url"',
        "vigil.toml: alerts.channels[ops].url: 'not a url' is not an http:// or https:// URL",
    ),
    (URL, '"ftp://example.com/x"', "is not an http:// or https:// URL"),
    (URL, '"file:///etc/passwd"', "is not an http:// or https:// URL"),
    (HOOK, f'{HOOK}\nsecret = "whsec_not base64!"', "vigil.toml: alerts.channels[ops].secret"),
    (HOOK, f'{HOOK}\nsecret = "whsec_"', "vigil.toml: alerts.channels[ops].secret"),
    ("[[alerts.rules]]", '[[alerts.channels]]\nname = "ops"\nkind = "log"\n[[alerts.rules]]', "ops"),
    ("[[alerts.rules]]", '[[alerts.rules]]\nname = "r"\n[[alerts.rules]]', "rule names must be unique"),
    ("[[alerts.channels]]", '[[targets]]\nname = "van"\ndescription = "a van"\n[[alerts.channels]]', DUPE),
    ('path = "{folder}"', 'path = "{folder}"\ntargets = ["nobody"]', "[cam1].targets: no target named no"),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "rtsp://u:pw@cam/s"', "holds a password: put it in pass"),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "ftp://cam/s"', "sources[cam1].url: must be an rtsp"),
    ('path = "{folder}"', 'path = "{folder}"\npassword_env = "CAM_PW"', "password_* are for a stream"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nurl = "rtsp://c/s"\noffline_channels = ["ops"]',
        f"vigil.toml: watch.sources[cam1].offline_channels: {MOVED_OFFLINE}",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nurl = "rtsp://c/s"\noffline_alert_s = 60',
        f"vigil.toml: watch.sources[cam1].offline_alert_s: {MOVED_OFFLINE}",
    ),
    ('targets = ["van"]', 'on = "camera_offline"\nafter_s = 60\ntargets = ["van"]', RULE_TARGETS),
    ('targets = ["van"]', 'on = "camera_offline"', "alerts.rules[r]: a camera_offline rule needs after_s"),
    ('targets = ["van"]', 'targets = ["van"]\nafter_s = 60', "alerts.rules[r]: after_s: only for camera_off"),
    ('targets = ["van"]', 'on = "disk_pressure"', "alerts.rules[r]: sources: a disk_pressure rule is about"),
    ('targets = ["van"]', 'on = "camera_gone"', "alerts.rules[r].on: Input should be 'detection', 'camera"),
    (
        'targets = ["van"]',
        'on = "camera_offline"\nafter_s = 60\nmessage = "{target} gone"',
        "alerts.rules[r].message: template field {target} is not allowed (use one of: host, minutes",
    ),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "rtsp://cam/s"\nsegment_s = 1', "segment_s: Input"),
    ('path = "{folder}"', 'path = "{folder}"\nmin_free = "10 parsecs"', "sources[cam1].min_free: '10 p"),
    ('path = "{folder}"', 'path = "{folder}"\nmin_free = "100%"', "a percentage of the volume is between"),
    ('path = "{folder}"', 'path = "{folder}"\nkeep_days = 0', "watch.sources[cam1].keep_days: Input should"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nkeep_days = 40\n[retention]\nkeep_days = 3\nkeep_alerted_days = 30',
        "watch.sources[cam1]: keep_alerted_days (30) must be at least keep_days (40)",
    ),
    (
        RULE_END,
        f'{RULE_END}\n[retention]\nalert_channels = ["ops"]',
        'vigil.toml: retention.alert_channels: moved: write an [[alerts.rules]] with on = "disk_pressure"',
    ),
    (RULE_END, f"{RULE_END}\n[retention]\nkeep_alerted_days = 3", "keep_days (unset: kept for ever)"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = -1',
        "vigil.toml: watch.sources[cam1].static_gate: Input should be",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = 300',
        "vigil.toml: watch.sources[cam1].static_gate: Input should be",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = "on"',
        "vigil.toml: watch.sources[cam1].static_gate: Input should be",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BAD)
def test_config_check_refuses(workdir: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    result = check(workdir, GOOD.replace(old, new, 1))
    assert result.exit_code == 2, result.output
    assert "1 invalid setting(s)" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output and "For further information" not in result.output


def test_not_a_url_names_the_url(workdir: Path) -> None:
    result = check(workdir, GOOD.replace('"https://hooks.example.com/vigil"', '"not a url"'))
    assert "'not a url' is not an http:// or https:// URL with a host" in result.output


def test_environment_variable_with_an_unknown_section_is_an_error(workdir: Path) -> None:
    result = check(workdir, GOOD, env={"VIGIL_MODLE__ID": "x"})
    assert result.exit_code == 2
    assert "environment variable VIGIL_MODLE__ID: no settings section 'modle'" in result.output


def test_missing_source_folder_and_model_directory_are_warnings_that_name_them(workdir: Path) -> None:
    text = GOOD.replace('path = "{folder}"', 'path = "/mnt/not-mounted"') + '[model]\nid = "/models/absent"\n'
    result = check(workdir, text)
    assert result.exit_code == 0, result.output
    assert (
        "warning: vigil.toml: watch.sources[cam1].path: /mnt/not-mounted is not a directory" in result.output
    )
    assert (
        "warning: vigil.toml: model.id: /models/absent looks like a directory but there is none"
        in result.output
    )


def test_hub_ids_are_not_taken_for_paths(workdir: Path) -> None:
    result = check(workdir, GOOD + '[model]\nid = "Qwen/Qwen2.5-VL-7B-Instruct"\n')
    assert result.exit_code == 0 and "warning" not in result.output


def test_whsec_secrets_are_those_the_standard_webhooks_library_accepts() -> None:
    """Our check agrees with the reference implementation on what a whsec_ secret is."""
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert check_webhook_secret(good) == good
    Webhook(good)  # the reference library takes it
    for bad in ("whsec_not base64!", "whsec_", "whsec_@@@@"):
        with pytest.raises(ValueError, match="whsec_"):
            check_webhook_secret(bad)
        with pytest.raises(Exception):  # noqa: B017 - the reference library refuses it too (binascii.Error)
            Webhook(bad).sign("msg_1", __import__("datetime").datetime.now(), "{}")
    assert check_webhook_secret("a plain shared secret") == "a plain shared secret"


FULL = """
[storage]
data_dir = "{folder}/../data"
[[watch.sources]]
name = "cam1"
path = "{folder}"
static_gate = 8.0
[[targets]]
name = "van"
description = "a white delivery van"
threshold = 0.6
[[alerts.channels]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/vigil"
secret = "whsec_{secret}"
[[alerts.channels]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
mail_from = "vigil@example.com"
mail_to = ["ops@example.com"]
[[alerts.rules]]
name = "night-van"
targets = ["van"]
sources = ["cam*"]
days = ["mon", "fri"]
hours = "22-06"
timezone = "Europe/Amsterdam"
min_consecutive = 2
message = "{{target}} at {{source}}: {{score:.2f}}"
channels = ["ops", "mail"]
"""


def test_after_ok_no_command_refuses_the_same_settings(workdir: Path) -> None:
    """The promise of `config check`: settings it calls ok are taken by every command that reads them
    (each command applies them to the database at start, so a check it made later would refuse here)."""
    secret = base64.b64encode(b"k" * 24).decode()
    (workdir / "vigil.toml").write_text(
        FULL.replace("{folder}", str(workdir / "cams")).replace("{secret}", secret)
    )
    runner = CliRunner()
    checked = runner.invoke(cli, ["config", "check"])
    assert checked.exit_code == 0 and checked.output.startswith("ok:"), checked.output
    commands = [
        ["db", "upgrade"],
        ["config", "show"],
        ["targets", "list"],
        ["rules", "list"],
        ["alerts", "list"],
        ["status"],
        ["sql", "SELECT name, enabled FROM alert_rules"],
    ]
    for command in commands:
        result = runner.invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)
        assert "error" not in result.output.lower(), (command, result.output)
    rules = runner.invoke(cli, ["sql", "--format", "csv", "SELECT name, enabled FROM alert_rules"])
    assert rules.output.splitlines()[1:] == ["night-van,true"], rules.output


def problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith(("  ", "warning:"))]


def test_every_error_and_warning_is_reported_in_one_pass(workdir: Path) -> None:
    """Issue 22 (1): bad hours, bad timezone, an unknown target and an unknown channel in one rule, and a
    source the settings do not declare: all five at once, each with its file and key. Before, the check
    showed the first two and hid the warning; the others only after fixing them."""
    text = GOOD.replace('targets = ["van"]', 'targets = ["vann"]').replace(
        'sources = ["cam1"]', 'sources = ["cam2"]'
    )
    text = text.replace(RULE_END, 'channels = ["pager"]\nhours = "25-99"\ntimezone = "Mars/Olympus"')
    result = check(workdir, text)
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == [
        "vigil.toml: alerts.rules[r].channels: no channel named pager in the settings",
        "vigil.toml: alerts.rules[r].hours: '25-99' is not a valid range of hours",
        "vigil.toml: alerts.rules[r].targets: no target named vann in the settings or the database",
        "vigil.toml: alerts.rules[r].timezone: 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Paris)",
        "warning: vigil.toml: alerts.rules[r].sources: no source named cam2 in the settings",
    ]
    assert "error: 4 invalid setting(s):" in result.output


def test_a_section_check_is_made_even_when_another_key_of_the_section_is_bad(workdir: Path) -> None:
    """A webhook channel with a bad timeout and no url: pydantic stops at the timeout; both are reported."""
    result = check(workdir, GOOD.replace(f"url = {URL}", "timeout_s = -1"))
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == [
        "vigil.toml: alerts.channels[ops]: a webhook channel needs url",
        "vigil.toml: alerts.channels[ops].timeout_s: Input should be greater than 0",
    ]


def test_a_refused_value_is_reported_once_not_again_by_what_depends_on_it(workdir: Path) -> None:
    """The channel's url is refused: not also "needs url", nor "no channel named ops" for the rule; a
    target without a description is not also "no target named van"."""
    text = GOOD.replace(URL, '"ftp://example.com/x"').replace('description = "a white delivery van"', "")
    result = check(workdir, text)
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == [
        "vigil.toml: alerts.channels[ops].url: 'ftp://example.com/x' is not an http:// or https:// URL "
        "with a host",
        "vigil.toml: targets[van].description: Field required",
    ]


def test_an_environment_variable_is_named_not_the_file(workdir: Path) -> None:
    """Issue 22 (2): `VIGIL_MODEL__FRAMES_PER_WINDOW=0` was blamed on vigil.toml."""
    env = {"VIGIL_MODEL__FRAMES_PER_WINDOW": "0", "VIGIL_WEB__HOST": "0.0.0.0"}
    result = check(workdir, GOOD.replace(RULE_END, f'{RULE_END}\nhours = "25-99"'), env=env)
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == [
        "environment variable VIGIL_MODEL__FRAMES_PER_WINDOW: model.frames_per_window: "
        "Input should be greater than or equal to 1",
        "environment variable VIGIL_WEB__HOST: web: host 0.0.0.0 is not a loopback address: set web.password "
        "to bind it",
        "vigil.toml: alerts.rules[r].hours: '25-99' is not a valid range of hours",
    ]
    # Every command that reads the settings says the same, not only the check.
    listed = CliRunner().invoke(cli, ["targets", "list"], env=env)
    assert listed.exit_code == 2
    assert "environment variable VIGIL_MODEL__FRAMES_PER_WINDOW: model.frames_per_window" in listed.output


def test_a_misspelt_key_gets_the_known_key_it_resembles(workdir: Path) -> None:
    text = GOOD + "[model]\nframes_pr_window = 4\n[modle]\nid = 'x'\n"
    env = {"VIGIL_WATCH__SETLE_S": "3", "VIGIL_MODLE__ID": "y", "VIGIL_WATCH__SOURCES": "not json"}
    result = check(workdir, text, env=env)
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == [
        "environment variable VIGIL_MODLE__ID: no settings section 'modle' (did you mean `model`?)",
        "environment variable VIGIL_WATCH__SETLE_S: watch.setle_s: unknown key (did you mean `settle_s`?)",
        "environment variable VIGIL_WATCH__SOURCES: watch.sources: not valid JSON",
        "vigil.toml: model.frames_pr_window: unknown key (did you mean `frames_per_window`?)",
        "vigil.toml: modle: unknown key (did you mean `model`?)",
    ]
    assert "Extra inputs" not in result.output


def test_the_count_includes_the_targets_and_rules_made_with_the_cli(workdir: Path) -> None:
    """Issue 22 (3): "0 target(s), 0 rule(s)" while the database held two targets and a rule made with the
    CLI. Both are counted, and which are the file's is said."""
    (workdir / "vigil.toml").write_text(f'[storage]\ndata_dir = "{workdir / "data"}"\n')
    runner = CliRunner()
    for command in (["targets", "add", "person", "a person walking"], ["targets", "add", "dog", "a dog"]):
        assert runner.invoke(cli, command).exit_code == 0
    assert runner.invoke(cli, ["rules", "add", "night", "-t", "dog"]).exit_code == 0
    result = runner.invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "0 source(s), 2 target(s) (0 in vigil.toml, 2 made with the CLI), " in result.output
    assert "1 rule(s) (0 in vigil.toml, 1 made with the CLI), model" in result.output
    (workdir / "vigil.toml").write_text(
        f'[storage]\ndata_dir = "{workdir / "data"}"\n'
        '[[targets]]\nname = "van"\ndescription = "a white van"\n'
        '[[alerts.rules]]\nname = "r"\ntargets = ["van"]\n'
    )
    result = runner.invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert (
        "3 target(s) (1 in vigil.toml, 2 made with the CLI), 2 rule(s) (1 in vigil.toml, 1 made"
        in result.output
    )


def test_home_assistant_naming_a_refused_channel_is_not_reported_again(workdir: Path) -> None:
    text = (
        GOOD
        + '[[alerts.channels]]\nname = "m"\nkind = "mqtt"\n[homeassistant]\nenabled = true\nchannel = "m"\n'
    )
    result = check(workdir, text)
    assert result.exit_code == 2, result.output
    assert problem_lines(result.output) == ["vigil.toml: alerts.channels[m]: a mqtt channel needs mqtt_host"]


def test_min_free_is_bytes_or_a_share_of_the_volume() -> None:
    from vigil.config.retention import min_free_bytes

    assert min_free_bytes("4.5GiB", 10**12) == int(4.5 * 2**30)
    assert min_free_bytes("5GB", 10**12) == 5 * 10**9
    assert min_free_bytes("1000000", 10**12) == 10**6
    assert min_free_bytes("12.5%", 8000) == 1000


def test_a_stream_sources_missing_folder_is_no_warning(workdir: Path) -> None:
    stream = 'path = "/srv/not-yet/gate"\nurl = "rtsp://cam:554/s"'
    result = check(workdir, GOOD.replace('path = "{folder}"', stream))
    assert result.exit_code == 0 and "warning" not in result.output, result.output

"""What a new user is told: every lint message says what is wrong, where (file:line:col) and how
to fix it (`hint:`). Tables of (workflow text -> the diagnostics expected, hint included), over
real plugins (loaded from a folder through entry points), real git repositories and real files."""

from __future__ import annotations

import os
import subprocess
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from controller.plugins import Registry, discover
from controller.triggers.schedule import Schedule, ScheduleError
from controller.workflow import expr
from controller.workflow.lint import lint_text
from controller.workflow.sources import LocalSources
from controller.workflow.uses import missing_inputs, missing_secrets

PLUGIN_HINT = ("hint: task types other than the built-in ones come from plugins: install the package that provides "
               "'fancyplugin' in Clarity's Python environment (pip install PACKAGE), then check that `clarity "
               "plugins list` shows it")
WHERE = "a bare file name is read in .clarity/, a path with '/' from the repository root"
FIELDS = "the five fields: minute hour day-of-month month day-of-week"

MANIFEST = """\
name: {name}
version: 1.2.0
description: A test plugin.
image: clarity-busybox:latest
task_types:
  say:
    description: Says something.
    module: {name}.work
    config: {{type: object}}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """`say` from plugin th_say 1.2.0, and a plugin `fancyplugin` that is installed but fails to load."""
    root = tmp_path_factory.mktemp("site")
    for name, init in (("th_say", ""), ("th_broken", "raise ImportError('no module named fancylib')\n")):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(init)
        (root / name / "work.py").write_text("print('work')\n")
        (root / name / "manifest.yaml").write_text(MANIFEST.format(name=name))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        reg = discover([metadata.EntryPoint("th_say", "th_say", "clarity.plugins"),
                        metadata.EntryPoint("fancyplugin", "th_broken", "clarity.plugins")])
    assert list(reg.plugins) == ["th_say"] and [p.plugin for p in reg.problems] == ["fancyplugin"]
    return reg


def lint(text: str, registry: Registry) -> list[str]:
    return [d.format() for d in lint_text(textwrap.dedent(text), "w.yaml", plugins=registry)[1]]


def schedule(cron: str) -> str:
    return f"""
        workflow:
          name: w
          triggers:
            - type: schedule
              cron: "{cron}"
          tasks: [{{name: t, image: alpine}}]
        """


# (case, workflow, the diagnostics expected in full, in order)
CASES: list[tuple[str, str, list[str]]] = [
    ("a task type of a plugin installed but broken", """
        workflow:
          name: w
          tasks:
            - {name: t, type: fancyplugin@^1}
        """, ["w.yaml:5:23: error: unknown task type 'fancyplugin'; known: container, say, workflow\n  hint: plugin "
              "'fancyplugin' is installed but could not be loaded: `clarity plugins list` says why"]),
    ("a task type no plugin provides", """
        workflow:
          name: w
          tasks:
            - {name: t, type: deployer}
        """, ["w.yaml:5:23: error: unknown task type 'deployer'; known: container, say, workflow\n  "
              + PLUGIN_HINT.replace("fancyplugin", "deployer").replace(
                  "shows it", "shows it; plugins that could not be loaded: fancyplugin")]),
    ("a trigger type no plugin provides", """
        workflow:
          name: w
          triggers: [{type: github_release}]
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:4:21: error: unknown trigger type 'github_release'; known: push, pull_request, tag, schedule, "
              "webhook, manual, event, file_watch\n  hint: trigger types other than the built-in ones come from "
              "plugins: install the package that provides 'github_release' in Clarity's Python environment (pip "
              "install PACKAGE), then check that `clarity plugins list` shows it; plugins that could not be loaded: "
              "fancyplugin"]),
    ("a plugin's version range the installed version is not in, with another error: both in one pass", """
        workflow:
          name: w
          tasks:
            - {name: t, type: say@^2, timeout: soon}
        """, ["w.yaml:5:23: error: task 't' asks for say@^2, but plugin th_say 1.2.0 is installed\n  hint: change "
              "the range (e.g. say@^1) to include the installed version, 1.2.0, or install a version of the th_say "
              "plugin that ^2 allows (pip install, then `clarity plugins list`)",
              "w.yaml:5:40: error: invalid duration 'soon': use e.g. 30s, 5m, 1h30m or a number of seconds in task "
              "'t'\n  hint: Time limit: 30s, 5m, 1h30m, 1.5h, or a number of seconds."]),
    ("a slip of the pen is still a slip of the pen", """
        workflow:
          name: w
          tasks:
            - {name: t, type: sya}
        """, ["w.yaml:5:23: error: unknown task type 'sya'; known: container, say, workflow\n"
              "  hint: did you mean 'say'?"]),
    ("every mistake of one string in one pass", """
        workflow:
          name: w
          tasks:
            - name: t
              image: alpine
              commands: ["echo ${gti.sha} ${git.sha | upper} ${tasks.zz.output}"]
        """, ["w.yaml:7:24: error: unknown expression root 'gti' in ${gti.sha}; known roots: tasks, workflow, git, "
              "trigger, inputs, secrets, env\n  hint: did you mean 'git'?",
              "w.yaml:7:35: error: malformed expression '${git.sha | upper}': expected ${root.name} with parts of "
              "letters, digits, '_', '-'\n  hint: an expression only names a value: no filters, operators or calls; "
              "change the value in the command instead (e.g. \"$(echo \"$X\" | tr a-z A-Z)\")",
              "w.yaml:7:54: error: ${tasks.zz.output} refers to an unknown task 'zz'\n"
              "  hint: the workflow's tasks: t"]),
    ("an unterminated expression after good ones", """
        workflow:
          name: w
          tasks:
            - {name: t, image: alpine, commands: ["echo ${workflow.nme} ${git.sha"]}
        """, ["w.yaml:5:49: error: ${workflow.nme}: workflow has id, name, version, file",
              "w.yaml:5:65: error: unterminated expression '${git.sha': expected ${root.name} with parts of letters, "
              "digits, '_', '-'\n  hint: close it with '}'; a literal ${ is written $${"]),
    ("cron: minute", schedule("61 * * * *"),
     ["w.yaml:6:14: error: invalid cron expression '61 * * * *': minute 61 is out of range (0-59)\n  hint: the first "
      f"field is the minute: 0-59, or a list (1,15), range (1-5) or step (*/15) of those; {FIELDS}"]),
    ("cron: hour", schedule("0 24 * * *"),
     ["w.yaml:6:16: error: invalid cron expression '0 24 * * *': hour 24 is out of range (0-23)\n  hint: the second "
      f"field is the hour: 0-23, or a list (1,15), range (1-5) or step (*/15) of those; {FIELDS}"]),
    ("cron: day of month, in a list", schedule("0 0 1,32 * *"),
     ["w.yaml:6:20: error: invalid cron expression '0 0 1,32 * *': day of month 32 is out of range (1-31)\n  hint: "
      f"the third field is the day of month: 1-31, or a list (1,15), range (1-5) or step (*/15) of those; {FIELDS}"]),
    ("cron: month, the end of a range", schedule("0 0 1 6-13 *"),
     ["w.yaml:6:22: error: invalid cron expression '0 0 1 6-13 *': month 13 is out of range (1-12)\n  hint: the "
      "fourth field is the month: 1-12, or jan-dec, or a list (1,15), range (1-5) or step (*/15) of those; "
      f"{FIELDS}"]),
    ("cron: day of week", schedule("0 0 * * 8"),
     ["w.yaml:6:22: error: invalid cron expression '0 0 * * 8': day of week 8 is out of range (0-7)\n  hint: the "
      "fifth field is the day of week: 0-7 (0 and 7 are Sunday), or sun-sat, or a list (1,15), range (1-5) or step "
      f"(*/15) of those; {FIELDS}"]),
    ("cron: a word croniter does not know", schedule("0 0 * foo *"),
     ["w.yaml:6:20: error: invalid cron expression '0 0 * foo *': month field 'foo' is not valid\n  hint: the "
      f"fourth field is the month: 1-12, or jan-dec, or a list (1,15), range (1-5) or step (*/15) of those; {FIELDS}"]),
    ("cron: a step of 0", schedule("*/0 * * * *"),
     ["w.yaml:6:16: error: invalid cron expression '*/0 * * * *': a step of 0 in the minute field\n"
      "  hint: a step is at least 1: */15 is every 15th"]),
    ("cron: six fields", schedule("0 0 * * * 2030"),
     ["w.yaml:6:24: error: cron expression '0 0 * * * 2030' has 6 fields; expected five (minute hour day-of-month "
      "month day-of-week): no seconds or years\n  hint: a sixth field is seconds or a year, which a schedule does "
      "not take: write the five fields minute hour day-of-month month day-of-week"]),
    ("cron: four fields", schedule("0 * * *"),
     ["w.yaml:6:13: error: cron expression '0 * * *' has 4 fields; expected five (minute hour day-of-month month "
      "day-of-week): no seconds or years\n  hint: write all five fields, minute hour day-of-month month "
      "day-of-week: '0 * * * *' is every hour, '30 2 * * 1-5' 02:30 on weekdays"]),
    ("cron: a date that never comes", schedule("0 0 30 2 *"),
     ["w.yaml:6:18: error: cron expression '0 0 30 2 *' never matches: no such date (day-of-month not in any of the "
      "months?)\n  hint: February has at most 29 days; April, June, September and November 30"]),
    ("a time zone misspelt", """
        workflow:
          name: w
          triggers: [{type: schedule, cron: "@daily", timezone: Europe/Berln}]
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:4:57: error: unknown time zone 'Europe/Berln': use an IANA name such as UTC or Europe/Berlin\n"
              "  hint: did you mean 'Europe/Berlin'?"]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_message_place_and_hint(registry: Registry, text: str, expected: list[str]) -> None:
    assert lint(text, registry) == expected


def test_an_unknown_type_is_not_blamed_on_a_broken_plugin_when_none_is(tmp_path: Path) -> None:
    found = lint("""
        workflow:
          name: w
          tasks:
            - {name: t, type: fancyplugin}
        """, Registry())
    assert found == ["w.yaml:5:23: error: unknown task type 'fancyplugin'; known: container, workflow\n  " + PLUGIN_HINT]


@pytest.mark.parametrize(("cron", "field", "value", "offset"), [
    ("60 * * * *", "minute", 60, 0), ("* 24 * * *", "hour", 24, 2), ("* * 0 * *", "day of month", 0, 4),
    ("* * 32 * *", "day of month", 32, 4), ("* * * 0 *", "month", 0, 6), ("* * * 13 *", "month", 13, 6),
    ("* * * * 8", "day of week", 8, 8), ("1,2,99 * * * *", "minute", 99, 4), ("5-70 * * * *", "minute", 70, 2),
    ("60/5 * * * *", "minute", 60, 0), ("* * * * 7-8", "day of week", 8, 10),
])
def test_cron_names_the_field_and_its_range(cron: str, field: str, value: int, offset: int) -> None:
    ranges = {"minute": "0-59", "hour": "0-23", "day of month": "1-31", "month": "1-12", "day of week": "0-7"}
    with pytest.raises(ScheduleError) as info:
        Schedule(cron)
    assert str(info.value).endswith(f": {field} {value} is out of range ({ranges[field]})")
    assert info.value.offset == offset and info.value.hint is not None and ranges[field] in info.value.hint


@pytest.mark.parametrize("cron", ["* * * * 7", "0 0 * * mon-fri", "0 0 1 jan-mar *", "30-10 * * * *", "@daily",
                                  "*/61 * * * *", "0 0 L * *"])
def test_cron_that_croniter_takes_is_still_taken(cron: str) -> None:
    Schedule(cron)


def test_find_all_reports_every_malformed_expression_and_keeps_the_good_ones() -> None:
    refs, malformed = expr.find_all("${a.b | x} ${git.sha} ${env.X:-y} $${git.sha | y} ${tasks.t.output")
    assert [r.path for r in refs] == ["git.sha"]
    assert [(e.offset, e.message.split(": expected")[0]) for e in malformed] == [
        (22, "malformed expression '${env.X:-y}'"), (50, "unterminated expression '${tasks.t.output'")]
    assert expr.references_tasks(["${tasks.a.output} ${git.sha | x}"]) == {"a"}
    with pytest.raises(expr.ExprError):  # the engine's `find` still refuses a malformed string
        expr.find("${git.sha} ${git.sha | x}")


# -- files that cannot be read: real git repositories -------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.org",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.org", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


BASE = "workflow:\n  name: base\n  tasks: [{name: t, image: alpine}]\n"


def child(extends: str) -> str:
    return f"workflow:\n  name: app\n  extends: {extends}\n"


@pytest.mark.parametrize(("extends", "hint"), [
    ("nothere.yaml", f"{WHERE}; the .yaml files in .clarity/: base.yaml, ci.yaml, deploy.yml"),
    ("bsae.yaml", f"did you mean base.yaml? ({WHERE})"),
    ("ci/base.yaml", f"{WHERE}; there is no folder ci/"),
    ("docs/base.yaml", f"{WHERE}; docs/ holds no .yaml file"),
])
@pytest.mark.parametrize("at_commit", [True, False], ids=["commit", "working tree"])
def test_a_missing_base_says_where_it_was_looked_for(tmp_path: Path, extends: str, hint: str, at_commit: bool) -> None:
    repo = tmp_path / "app"
    text = child(extends)
    sha = commit(repo, {".clarity/ci.yaml": text, ".clarity/base.yaml": BASE, ".clarity/deploy.yml": BASE,
                        ".clarity/notes.txt": "x", "docs/readme.md": "x"})
    sources = LocalSources(repo, sha if at_commit else None, cache=tmp_path / "cache")
    _wf, diags = lint_text(text, ".clarity/ci.yaml", plugins=Registry(), sources=sources,
                           loaded=sources.own(".clarity/ci.yaml", text, None))
    shown = f".clarity/{extends}" if "/" not in extends else extends
    assert [d.format() for d in diags] == [
        f".clarity/ci.yaml:3:12: error: cannot read the base {shown}: no file {shown}"
        f"{f' at {sha[:12]}' if at_commit else ''}\n  hint: {hint}"]


def test_a_missing_ref_of_another_repository_lists_its_tags_and_branches(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    commit(templates, {".clarity/python.yaml": BASE})
    git(templates, "tag", "v1")
    git(templates, "tag", "v2")
    app = tmp_path / "app"
    sha = commit(app, {"README": "x"})
    sources = LocalSources(app, sha, cache=tmp_path / "cache")

    def first(extends: str) -> str:
        text = child(extends)
        return lint_text(text, ".clarity/ci.yaml", plugins=Registry(), sources=sources,
                         loaded=sources.own(".clarity/ci.yaml", text, None))[1][0].format()

    said = first(f"{{repo: {templates}, ref: release, path: python.yaml}}")
    assert said.endswith(f"repository {templates} has no tag, branch or commit 'release'\n"
                         "  hint: check the tag, branch or commit; the repository's tags: v1, v2; branches: main")
    assert first(f"{{repo: {templates}, ref: mian, path: python.yaml}}").endswith("\n  hint: did you mean 'main'?")
    assert first(f"{{repo: {templates}, ref: v1, path: pyhton.yaml}}").endswith(
        f"no file .clarity/pyhton.yaml in {templates} at v1\n  hint: did you mean python.yaml? ({WHERE})")


def test_a_missing_sub_workflow_says_what_there_is(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    text = "workflow:\n  name: app\n  tasks:\n    - {name: d, type: workflow, workflow: deploy.yaml}\n"
    sha = commit(repo, {".clarity/ci.yaml": text, ".clarity/release.yaml": BASE})
    sources = LocalSources(repo, sha, cache=tmp_path / "cache")
    _wf, diags = lint_text(text, ".clarity/ci.yaml", plugins=Registry(), sources=sources,
                           loaded=sources.own(".clarity/ci.yaml", text, None))
    assert [d.format() for d in diags] == [
        f".clarity/ci.yaml:4:43: error: task 'd': cannot read the workflow .clarity/deploy.yaml: no file "
        f".clarity/deploy.yaml at {sha[:12]}\n  hint: {WHERE}; the .yaml files in .clarity/: ci.yaml, release.yaml"]


# -- secrets and inputs a run is not given --------------------------------------------------------------------

SECRETS = """\
workflow:
  name: app
  extends: base.yaml
  triggers:
    - type: manual
      inputs: {version: {type: string}}
  env: {AUTH: "Bearer ${secrets.API}"}
  tasks:
    - name: deploy
      image: alpine
      secrets: [DEPLOY_KEY]
      commands:
        - echo ${inputs.version}
        - 'curl -H "$AUTH" -d ${secrets.TOKEN} https://example.org  # ${secrets.TOKEN} again'
      env: {X: "${secrets.OTHER}"}
"""
SECRETS_BASE = """\
workflow:
  tasks:
    - name: check
      image: alpine
      commands: ["echo ${secrets.BASE_ONLY}"]
"""


def test_a_secret_not_given_is_reported_where_it_is_used(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    sha = commit(repo, {".clarity/ci.yaml": SECRETS, ".clarity/base.yaml": SECRETS_BASE})
    sources = LocalSources(repo, sha, cache=tmp_path / "cache")
    wf, diags = lint_text(SECRETS, ".clarity/ci.yaml", plugins=Registry(), sources=sources,
                          loaded=sources.own(".clarity/ci.yaml", SECRETS, None))
    assert wf is not None and not diags, diags
    check, deploy = wf.tasks
    found = [d.format() for task in (check, deploy) for d in missing_secrets(wf, task, {"OTHER"})]
    hint = "  hint: pass --secret {0}=VALUE, --secret {0} (the value of ${0}), --secret-file {0}=PATH, or set " \
           "CLARITY_SECRET_{0} in the environment of clarity run"
    assert found == [
        ".clarity/base.yaml:5:24: error: task 'check' needs secret 'BASE_ONLY', which is not set\n"
        + hint.format("BASE_ONLY"),  # in the base it came from
        ".clarity/ci.yaml:7:23: error: task 'check' needs secret 'API', which is not set\n" + hint.format("API"),
        ".clarity/ci.yaml:11:17: error: task 'deploy' needs secret 'DEPLOY_KEY', which is not set\n"
        + hint.format("DEPLOY_KEY"),
        ".clarity/ci.yaml:14:31: error: task 'deploy' needs secret 'TOKEN', which is not set\n" + hint.format("TOKEN"),
        ".clarity/ci.yaml:7:23: error: task 'deploy' needs secret 'API', which is not set\n" + hint.format("API"),
    ]
    assert missing_secrets(wf, deploy, {"OTHER", "API", "TOKEN", "DEPLOY_KEY"}) == []
    assert [d.format() for d in missing_inputs(wf, deploy, {})] == [
        ".clarity/ci.yaml:13:16: error: task 'deploy' reads input 'version', which was not given\n"
        "  hint: pass --input version=VALUE, or give it a default in a manual trigger's inputs"]


def test_a_secret_name_no_controller_takes_is_a_lint_error(registry: Registry) -> None:
    # `clarity secret set` and the `secrets:` list take capital names only: `${secrets.lower}` could
    # be given to `clarity run` but never set on a controller
    assert lint("""\
        workflow:
          name: w
          tasks:
            - name: a
              image: busybox
              commands: ["echo ${secrets.DEPLOY_KEY} ${secrets.deploy-key}"]
        """, registry) == [
        "w.yaml:6:46: error: ${secrets.deploy-key}: secret names are capital letters, digits and '_', not starting "
        "with a digit\n  hint: write ${secrets.DEPLOY_KEY} (and give it under that name: --secret, clarity secret set)"]


def test_a_secret_in_an_image_name_is_a_lint_error(registry: Registry) -> None:
    assert lint("""\
        workflow:
          name: w
          tasks:
            - name: a
              image: "registry/${secrets.TOKEN}:1"
              env: {image: "${secrets.TOKEN}"}
              commands: ["true"]
        """, registry) == [
        "w.yaml:5:24: error: ${secrets.TOKEN}: an image name is not secret (it is shown in logs and statuses): a "
        "secret cannot be part of it\n  hint: log in to the registry on the runner's machine (docker login) instead"]

"""The admin speaks Simplified Chinese: every string the code marks for translation has a zh_Hans translation in its
app's catalogue, the committed .mo files are what their .po files compile to, the admin switches language, and
dates show in the business time zone in Chinese formats."""

import gettext
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import MemberFactory, StaffUserFactory

BASE_DIR = Path(settings.BASE_DIR)
# The apps with a catalogue of their own (the Makefile's LOCALE_APPS: `make messages` updates and compiles them).
LOCALE_APPS = ["loyalty", "members", "points", "tiers", "stored_value", "campaigns", "reports"]
CATALOGUE = Path("locale") / "zh_Hans" / "LC_MESSAGES"
GETTEXT_TOOLS = ["xgettext", "msgmerge", "msguniq", "msgfmt"]


def _missing_tools():
    return [tool for tool in GETTEXT_TOOLS if shutil.which(tool) is None]


needs_gettext = pytest.mark.skipif(
    bool(_missing_tools()), reason=f"GNU gettext is not installed (missing {', '.join(_missing_tools())})"
)


def _project_apps():
    """The project's own apps: the folders next to manage.py that hold an apps.py (not tests, bench or .venv)."""
    return sorted(path.parent.name for path in BASE_DIR.glob("*/apps.py"))


def po_entries(text):
    """The entries of a .po file as dicts: msgctxt, msgid, msgid_plural, msgstr or msgstr[n] (joined strings) and
    flags (a set). Obsolete entries (#~) are left out."""
    entries, entry, keyword = [], {"flags": set()}, None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if "msgid" in entry:
                entries.append(entry)
            entry, keyword = {"flags": set()}, None
        elif line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[keyword] += _unquote(line)
        else:
            keyword, _, value = line.partition(" ")
            entry[keyword] = _unquote(value)
    return entries


def _unquote(literal):
    """A .po string literal's text: the escapes gettext writes (\\n, \\t, \\", \\\\) are JSON's too."""
    return json.loads(literal.strip())


def _not_translated(entries):
    """The msgids of entries that are untranslated (an empty msgstr) or fuzzy; the header is not an entry."""
    missing = []
    for entry in entries:
        if entry["msgid"] == "":
            continue
        translations = [value for key, value in entry.items() if key.startswith("msgstr")]
        if "fuzzy" in entry["flags"] or not translations or not all(translations):
            label = f"{entry['msgctxt']} | {entry['msgid']}" if "msgctxt" in entry else entry["msgid"]
            missing.append(label + (" (fuzzy)" if "fuzzy" in entry["flags"] else ""))
    return missing


def test_the_po_reader_sees_untranslated_fuzzy_and_escaped_entries():
    text = (
        'msgid ""\nmsgstr ""\n"Language: zh_Hans\\n"\n\n'
        'msgid "points"\nmsgstr "积分"\n\n'
        'msgid "stores"\nmsgstr ""\n\n'
        '#, fuzzy, python-format\nmsgid "Adjusted %(points)s"\nmsgstr "已调整 %(points)s"\n\n'
        'msgid "Say \\"why\\"\\n"\nmsgstr ""\n"说明\\"原因\\"\\n"\n\n'
        '#~ msgid "gone"\n#~ msgstr ""\n'
    )

    entries = po_entries(text)

    assert [entry["msgid"] for entry in entries] == ["", "points", "stores", "Adjusted %(points)s", 'Say "why"\n']
    assert entries[4]["msgstr"] == '说明"原因"\n'
    assert _not_translated(entries) == ["stores", "Adjusted %(points)s (fuzzy)"]


def test_every_project_app_that_shows_text_has_a_catalogue():
    """An app added later gets a catalogue (and a place in LOCALE_APPS) or its strings stay English."""
    with_catalogue = {app for app in _project_apps() if (BASE_DIR / app / CATALOGUE / "django.po").exists()}

    assert with_catalogue == set(LOCALE_APPS)


@needs_gettext
def test_every_marked_string_has_a_zh_hans_translation(tmp_path):
    """makemessages, run in a copy of the project as `make messages` runs it, finds nothing untranslated or fuzzy
    in any app's catalogue, and no marked string outside the apps' catalogues (a root locale/ folder)."""
    copy = tmp_path / "project"
    shutil.copytree(
        BASE_DIR,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".git", "tests", "bench", "__pycache__", "*.mo", "node_modules"),
        symlinks=True,
    )
    environment = {**os.environ, "ENVIRONMENT": "test"}
    for app in _project_apps():
        subprocess.run(
            [
                sys.executable,
                "../manage.py",
                "makemessages",
                "-l",
                "zh_Hans",
                "--no-obsolete",
                "--add-location",
                "file",
            ],
            cwd=copy / app,
            env=environment,
            check=True,
            capture_output=True,
        )

    missing = []
    for po_file in sorted(copy.glob(f"*/{CATALOGUE}/django.po")) + sorted(copy.glob(f"{CATALOGUE}/django.po")):
        where = po_file.relative_to(copy).parts[0]
        where = "outside the apps' catalogues (root locale/)" if where == "locale" else where
        missing += [f"{where}: {msgid}" for msgid in _not_translated(po_entries(po_file.read_text()))]
    assert missing == [], "strings without a zh_Hans translation (`make messages`, translate, again):\n" + "\n".join(
        missing
    )


@needs_gettext
@pytest.mark.parametrize("app", LOCALE_APPS)
def test_the_committed_mo_is_the_compilation_of_its_po(app, tmp_path):
    """django.mo is committed (the Docker image has no gettext tools): it says exactly what msgfmt makes of
    django.po now, so a translation edited in the .po but not compiled fails here."""
    folder = BASE_DIR / app / CATALOGUE
    fresh = tmp_path / "django.mo"
    msgfmt = shutil.which("msgfmt")
    subprocess.run([msgfmt, "--check-format", "-o", fresh, folder / "django.po"], check=True, capture_output=True)  # noqa: S603

    with (folder / "django.mo").open("rb") as committed, fresh.open("rb") as compiled:
        committed_catalogue = gettext.GNUTranslations(committed)._catalog
        compiled_catalogue = gettext.GNUTranslations(compiled)._catalog

    assert committed_catalogue == compiled_catalogue
    assert len(committed_catalogue) > 1  # more than the header


@pytest.fixture
def admin_client(db):
    client = Client()
    client.force_login(StaffUserFactory(username="boss", role="admin", is_superuser=True))
    return client


def test_the_admin_switches_language(admin_client):
    english = admin_client.get("/admin/")
    assert english.status_code == 200
    assert '<button type="submit" name="language" value="zh-hans" lang="zh-hans"' in english.text
    assert ">简体中文</button>" in english.text
    assert "Members" in english.text

    switched = admin_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    assert (switched.status_code, switched["Location"]) == (302, "/admin/")

    chinese = admin_client.get("/admin/")
    assert '<html lang="zh-hans"' in chinese.text
    assert ">积分调整申请</a>" in chinese.text  # the project's catalogue (points' AdjustmentRequest), not only Django's
    assert ">English</button>" in chinese.text
    assert ">简体中文</button>" not in chinese.text

    back = admin_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert back.status_code == 302
    assert '<html lang="en"' in admin_client.get("/admin/").text


def test_the_admin_shows_times_in_the_business_time_zone_in_chinese_formats(admin_client):
    MemberFactory(joined_at=datetime(2026, 1, 2, 17, 30, tzinfo=UTC))  # 01:30 on 3 January in Shanghai
    admin_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})

    page = admin_client.get("/admin/members/member/").text  # the list (a search for her would open her page)

    assert "2026年1月3日 01:30" in page
    assert "入会时间" in page


def test_the_api_answers_in_the_callers_language_with_the_same_code(db):
    """The test settings' LANGUAGE_CODE is en (tests/conftest.py): without Accept-Language the API answers in
    English, as every other API test expects; the machine code stays the same in Chinese."""
    client = Client(headers={"authorization": "Api-Key not-a-key"})

    english = client.get("/api/v1/members/")
    chinese = client.get("/api/v1/members/", headers={"accept-language": "zh-hans"})

    assert english.status_code == chinese.status_code == 401
    assert english.json() == {"code": "not_authenticated", "detail": "Invalid or inactive API key."}
    assert chinese.json() == {"code": "not_authenticated", "detail": "API 密钥无效或已停用。"}


# Labels that stay the same in Chinese: identifiers and abbreviations a Chinese clerk reads as they are.
SAME_IN_CHINESE = {"ID", "openid", "unionid", "SKU", "App ID"}


def test_every_model_and_field_label_of_the_project_speaks_chinese():
    """Also the labels Django makes from names (loyalty/model_labels.py): the admin's columns and filters."""
    from django.apps import apps
    from django.utils import translation

    from loyalty.model_labels import PROJECT_APPS

    english = []
    with translation.override("zh-hans"):
        for model in apps.get_models():
            meta = model._meta
            if meta.app_label not in PROJECT_APPS:
                continue
            labels = [("", meta.verbose_name), ("", meta.verbose_name_plural)]
            labels += [
                (f".{field.name}", field.verbose_name) for field in [*meta.local_fields, *meta.local_many_to_many]
            ]
            for where, label in labels:
                text = str(label)
                if text not in SAME_IN_CHINESE and not any("\u4e00" <= char <= "\u9fff" for char in text):
                    english.append(f"{meta.label}{where}: {text}")
    assert english == []

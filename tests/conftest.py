"""Shared test helpers: write a file tree from a dict, run facs and doit for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def write_tree(base: Path, tree: Mapping[str, Any]) -> None:
    """Write ``{"define/x.json": {...}, "tmpl/_ALL_/a.j2": "text"}`` below ``base``.

    Dicts and lists become JSON; strings are written as they are.
    """
    for rel, content in tree.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, indent=2) + "\n")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run(cmd: list[str], cwd: Path, check: bool = False, env: Mapping[str, str] | None = None,
        **kw: Any) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; ``env``: variables to set on top of this process's."""
    env = {**os.environ, **(env or {})}
    env.pop("DOIT_CONFIG", None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def facs(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``facs`` command in ``root``."""
    return run([sys.executable, "-m", "facsimile.cli", *args], cwd=root, check=check)


def doit(root: Path, *args: str, check: bool = False,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``doit`` in ``root`` (which has the one-line dodo.py)."""
    return run([sys.executable, "-m", "doit", *args], cwd=root, check=check, env=env)


DODO = "from facsimile.dodo import *  # noqa: F403\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty facsimile root: a project file and the one-line dodo.py."""
    write_tree(tmp_path, {"define/facsimile.json": {"name": "demo"}, "dodo.py": DODO})
    return tmp_path


def mtimes(folder: Path) -> dict[str, int]:
    """``{relpath: mtime_ns}`` of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """``{relpath: (mtime_ns, bytes)}`` of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }



#: The quick subset (``pytest -m "not slow"``), by module and test name (every
#: parameter): tests that took about a second or less in a ``--durations=0`` run on
#: the shared 2-core machine, and one of the fastest of each area (build, plan,
#: tasks, sync, ...) besides. Every other test is marked ``slow``; ``.ci/run`` runs all.
QUICK_TESTS: dict[str, set[str]] = {
    "test_build": {
        "test_dot_files_are_outputs_and_editor_leftovers_are_not",
        "test_one_output_builds_alone",
    },
    "test_checkout_layers": {
        "test_custom_tmpl_path_has_its_extra_beside_it",
    },
    "test_scan": {
        "test_a_file_is_read_again_only_when_it_changed",
    },
    "test_cli": {
        "test_facs_without_a_command_prints_the_usage",
    },
    "test_console": {
        "test_doit_info_in_words",
    },
    "test_doitdb": {
        "test_a_damaged_file_is_one_line_and_exit_1",
        "test_a_no_op_does_not_write",
        "test_keys_that_json_escapes_and_blank_lines",
        "test_one_record_a_line_and_unchanged_lines_are_kept",
        "test_other_layouts_are_read_and_rewritten_whole",
        "test_random_changes_read_back_as_made",
    },
    "test_fleet": {
        "test_a_bad_slice_is_a_usage_error",
        "test_slice_specs",
    },
    "test_hardening": {
        "test_doit_db_records_of_the_wrong_shape_are_one_line",
        "test_no_cache_is_written_without_a_digest_key",
        "test_project_names_and_versions_that_would_leave_build_are_refused",
        "test_the_class_comes_from_the_root_before_its_parent",
    },
    "test_plan": {
        "test_plan_without_state_says_what_it_would_generate",
    },
    "test_pool": {
        "test_bad_jobs_value_is_a_clear_error",
    },
    "test_seed": {
        "test_bad_class_is_a_clear_error",
        "test_class_override",
        "test_subproject_fans_out_over_its_own_modules_and_daemons",
        "test_two_fan_out_placeholders_in_one_path_are_an_error",
    },
    "test_state": {
        "test_ids_are_unique_even_after_next_id_was_edited",
    },
    "test_state_crypt": {
        "test_a_ciphertext_moved_to_another_entry_is_refused",
        "test_age_cli_ciphertext_decrypts_with_decrypt_value",
        "test_bad_recipient_is_named_shortened_with_its_file",
        "test_changed_recipients_reencrypt_every_entry_keep_revs_and_lock_out_the_removed",
        "test_digest_key_bytes_seal_and_open_also_with_age_cli",
        "test_file_sealed_to_two_recipients_opens_with_either_identity",
        "test_identity_files_missing_garbled_or_passphrase_protected",
        "test_identity_path_follows_the_environment",
        "test_keygen_writes_0600_refuses_overwrite_and_its_key_pair_works",
        "test_no_matching_identity_names_the_file_and_recipients_never_the_value",
        "test_public_key_of_an_ssh_identity_comes_from_its_pub_file",
        "test_rotating_one_value_changes_only_its_lines_and_raises_serial_by_one",
        "test_sealed_format_accessors_and_damaged_shape",
        "test_secrets_never_appear_in_the_sealed_text",
        "test_two_clones_rotating_different_entries_merge_cleanly_with_git",
        "test_value_we_encrypt_decrypts_with_age_cli_for_an_age_keygen_identity",
        "test_value_we_encrypt_decrypts_with_age_cli_for_an_ssh_keygen_key",
    },
    "test_state_remote": {
        "test_backend_refuses_a_second_create",
        "test_bad_urls_and_families",
        "test_round_trip_and_versions",
        "test_second_lock_waits_then_names_the_holder",
        "test_unlock_removes_a_killed_runs_lock",
        "test_versions_of_many_families_is_one_listing",
    },
    "test_suggest": {
        "test_close_key_and_path",
        "test_template_suggests_the_close_key",
        "test_template_top_level_name_and_plain_dict",
        "test_template_without_a_close_key_says_only_undefined",
    },
    "test_sync": {
        "test_one_failing_host_does_not_stop_the_others",
    },
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that :data:`QUICK_TESTS` does not name."""
    for item in items:
        module = getattr(item, "module", None)
        names = QUICK_TESTS.get(module.__name__ if module else "", set())
        if getattr(item, "originalname", item.name) not in names:
            item.add_marker(pytest.mark.slow)

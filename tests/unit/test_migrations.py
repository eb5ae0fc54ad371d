"""`load_migrations`: the shipped migrations load in version order; bad file names and
duplicate versions are refused before anything touches a database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.db.migrate import MIGRATIONS_DIR, Migration, MigrationError, load_migrations


def write(directory: Path, name: str, sql: str = "SELECT 1;") -> None:
    (directory / name).write_text(sql)


def test_shipped_migrations_load_with_increasing_versions() -> None:
    migrations = load_migrations()
    assert migrations, "no migrations found"
    versions = [m.version for m in migrations]
    assert versions[0] == 1
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert migrations[0].name == "tracking"
    assert "CREATE TABLE" in migrations[0].sql.upper()
    assert all(m.sql.strip() for m in migrations)


def test_default_directory_is_the_packaged_one() -> None:
    assert MIGRATIONS_DIR.name == "migrations"
    assert load_migrations(MIGRATIONS_DIR) == load_migrations()


def test_loads_in_version_order_regardless_of_creation_order(tmp_path: Path) -> None:
    write(tmp_path, "0010_late.sql", "-- ten")
    write(tmp_path, "0002_second.sql", "-- two")
    write(tmp_path, "0001_first.sql", "-- one")
    assert load_migrations(tmp_path) == [
        Migration(1, "first", "-- one"),
        Migration(2, "second", "-- two"),
        Migration(10, "late", "-- ten"),
    ]


def test_non_sql_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "0001_first.sql")
    write(tmp_path, "README.md", "notes")
    write(tmp_path, "0002_draft.sql.bak")
    assert [m.version for m in load_migrations(tmp_path)] == [1]


def test_empty_directory_gives_no_migrations(tmp_path: Path) -> None:
    assert load_migrations(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "00001_five.sql", "init.sql"]
)
def test_bad_file_name_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, "0001_ok.sql")
    write(tmp_path, name)
    with pytest.raises(MigrationError, match=rf"NNNN_name\.sql: {name}$"):
        load_migrations(tmp_path)


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_first.sql")
    write(tmp_path, "0001_again.sql")
    with pytest.raises(MigrationError, match="two migrations share a version number"):
        load_migrations(tmp_path)


def test_checksum_is_sha256_of_the_sql() -> None:
    mig = Migration(1, "x", "CREATE TABLE t ();")
    assert mig.checksum == hashlib.sha256(b"CREATE TABLE t ();").hexdigest()
    assert Migration(1, "x", "CREATE TABLE t ( );").checksum != mig.checksum

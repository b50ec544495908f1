"""An untrusted spec cannot make loading expensive: alias bombs, recursion, deep nesting, huge
files and too many SLOs are refused with file:line (exit 2), before the work is done."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from slo.cli import main as slo_main
from slo.errors import SpecError
from slo.judge.spec import MAX_SLOS, MAX_SPEC_BYTES, load_spec, parse_spec

SLO = "  - {{name: s{i}, select: {{service: a, span: b}}, objectives: {{latency_p95: 1s}}}}\n"


def _bomb(levels: int, fan: int = 10) -> str:
    """`levels` anchors, each a list of `fan` aliases of the one before: fan**levels nodes
    once expanded, from a few hundred bytes, under a key nothing reads."""
    lines = ["  l0: &l0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for n in range(1, levels):
        lines.append(f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * fan) + "]")
    return "version: 1\nunused:\n" + "\n".join(lines) + "\nslos:\n" + SLO.format(i=0)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refused(text: str, path: str = "slo.yaml") -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(text, path)
    return str(e.value)


def test_alias_bomb_is_refused_at_its_line_without_expanding_it() -> None:
    text = _bomb(6)  # a million strings expanded; the old loader built them all
    holder: list[str] = []
    peak = _peak_bytes(lambda: holder.append(_refused(text)))
    assert holder[0].startswith("slo.yaml:7: the spec expands to more than 100,000 YAML nodes")
    assert peak < 5 * 2**20, peak
    # aliases within the budget are still fine
    ok = parse_spec("version: 1\nslos:\n  - {name: x, select: &s {service: s, span: p}, "
                    "objectives: &o {latency_p95: 1s}}\n  - {name: y, select: *s, "
                    "objectives: *o}\n", "ok.yaml")
    assert [s.name for s in ok.slos] == ["x", "y"]


def test_recursive_alias_and_deep_nesting_name_their_line() -> None:
    assert _refused("version: 1\nslos: &s [*s]\n") == (
        "slo.yaml:2: recursive alias *s: it refers to a node that contains it")
    assert _refused("version: 1\nslos:\n  - &m {a: {b: *m}}\n").startswith(
        "slo.yaml:3: recursive alias *m")
    deep = "version: 1\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60))
    assert _refused(deep).startswith("slo.yaml:33: nested more than 32 levels deep")
    flow = "version: 1\nslos: " + "[" * 5000 + "]" * 5000 + "\n"
    assert _refused(flow).startswith("slo.yaml:2: ")  # not a RecursionError
    # an alias can make a shallow text deep: its expanded height counts
    chain = "version: 1\na: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: &b [[[[[[[[[[[[[*a]]]]]]]]]]]]]\n"
    assert _refused(chain).startswith("slo.yaml:3: nested more than 32 levels deep")


def test_huge_spec_and_too_many_slos(tmp_path: Path) -> None:
    big = "version: 1\nslos:\n" + "".join(SLO.format(i=i) for i in range(15_000))
    assert len(big) > MAX_SPEC_BYTES
    assert _refused(big).startswith(f"slo.yaml:1: the spec is {len(big):,} bytes; at most")
    path = tmp_path / "huge.yaml"
    path.write_text(big * 5)
    with pytest.raises(SpecError, match=r"huge\.yaml:1: the spec is [\d,]+ bytes"):
        load_spec(path)
    many = "version: 1\nslos:\n" + "".join(SLO.format(i=i) for i in range(MAX_SLOS + 1))
    assert _refused(many) == (f"slo.yaml:2: slos: {MAX_SLOS + 1:,} SLOs; at most "
                              f"{MAX_SLOS:,} in one spec: split it")


def test_a_thousand_slos_load_in_little_memory() -> None:
    text = "version: 1\nslos:\n" + "".join(SLO.format(i=i) for i in range(1000))
    specs = []
    peak = _peak_bytes(lambda: specs.append(parse_spec(text, "big.yaml")))
    assert len(specs[0].slos) == 1000 and specs[0].slos[-1].line == 1002
    assert peak < 64 * 2**20, peak  # tens of kB per SLO, not megabytes


def test_cli_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(9))  # the bomb: 8.7 GB and 90 s with the old loader
    res = CliRunner().invoke(slo_main, ["check", "--spec", str(path), "--store",
                                        str(tmp_path / "none"), "--report-dir",
                                        str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert f"{path}:7: the spec expands to more than" in res.output

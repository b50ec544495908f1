"""The text waterfall: layout, marks, scale and robustness."""

from __future__ import annotations

from slo.report.text import render


def sp(sid, parent, service, name, start, dur, sql=None, status="unset"):
    return {"span_id": sid, "parent_span_id": parent, "service": service, "name": name,
            "kind": "server", "start_ms": start, "duration_ms": dur, "status": status,
            "attributes": {"db.statement": sql} if sql else {}}


TRACE = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "spans": [
        sp("r", "", "order-service", "GET /orders/<int:order_id>", 0, 50),
        sp("c1", "r", "order-service", "GET", 2, 5),
        sp("u", "c1", "user-service", "GET /users/<int:id>", 2.5, 4, status="error"),
        sp("c2", "r", "order-service", "GET", 2, 45),
        sp("q", "c2", "inventory-service", "SELECT", 4, 40,
           "SELECT qty FROM inventory WHERE product_id IN (1, 2, 3)"),
    ],
}


def lines_of(text):
    return text.splitlines()


def test_one_line_per_span_in_tree_order_with_indent():
    out = lines_of(render(TRACE))
    body = out[3:]
    assert len(body) == 5
    assert body[0].startswith("order-service GET /orders/<int:order_id>")
    assert body[1].startswith("  order-service GET")
    assert body[2].startswith("    inventory-service SELECT qty FROM inventory WHERE product_id IN (?)"[:39])
    assert body[4].startswith("    user-service GET /users/<int:id> !")


def test_culprit_and_critical_path_marked():
    out = lines_of(render(TRACE))
    marked = [line for line in out if line.endswith("◀ culprit")]
    assert len(marked) == 1 and "inventory-service" in marked[0]
    user = next(line for line in out if "user-service" in line)
    assert "░" in user and "█" not in user  # off the critical path
    root = next(line for line in out if "GET /orders" in line)
    assert "█" in root and "░" not in root
    # An explicit culprit wins.
    assert "◀ culprit" in next(line for line in lines_of(render(TRACE, culprit_span_id="u")) if "user-service" in line)


def test_bars_are_to_scale_and_lines_fit_the_width():
    out = lines_of(render(TRACE, width=100))
    for line in out[3:]:
        assert len(line.replace(" ◀ culprit", "")) <= 100
    bars = {line.split("|")[0].strip(): line.split("|")[1] for line in out[3:]}
    root_bar = bars["order-service GET /orders/<int:order_id>"]
    assert root_bar.count("█") == len(root_bar)  # the root spans the whole trace
    q_bar = next(v for k, v in bars.items() if k.startswith("inventory-service"))
    assert abs(q_bar.count("█") / len(q_bar) - 40 / 50) < 0.05
    assert "\x1b" not in "\n".join(out)


def test_broken_traces_and_empty_traces_render():
    broken = {"trace_id": "x", "spans": [sp("a", "gone", "svc", "orphan", 0, 5), sp("b", "", "svc", "root", 1, 2)]}
    text = render(broken)
    assert "broken trace" in text and "orphan" in text and "root" in text
    assert "no spans" in render({"trace_id": "y", "spans": []})


def test_long_traces_are_cut_with_a_note():
    spans = [sp("r", "", "svc", "root", 0, 100)] + [sp(f"s{i}", "r", "svc", f"q{i}", i, 1) for i in range(300)]
    text = render({"trace_id": "z", "spans": spans}, max_spans=50)
    assert len(text.splitlines()) == 3 + 50 + 1
    assert "251 more spans" in text


def test_an_n_plus_one_loop_is_one_line():
    spans = [sp("r", "", "product-service", "GET /products", 0, 30),
             sp("q0", "r", "product-service", "SELECT", 1, 2, "SELECT * FROM products LIMIT 20")]
    spans += [sp(f"c{i}", "r", "product-service", "SELECT", 4 + i, 0.5,
                 f"SELECT name FROM categories WHERE id = {i}") for i in range(20)]
    lines = render({"trace_id": "n", "spans": spans}).splitlines()[3:]
    assert len(lines) == 3
    assert "SELECT name FROM categories WHERE id = ? ×20" in lines[2]
    assert lines[2].rstrip().endswith("10.0 ms")  # 20 x 0.5 ms
    # Three in a row stay separate lines; collapse=0 never collapses.
    assert len(render({"trace_id": "n", "spans": spans[:5]}).splitlines()[3:]) == 5
    assert len(render({"trace_id": "n", "spans": spans}, collapse=0).splitlines()[3:]) == 22

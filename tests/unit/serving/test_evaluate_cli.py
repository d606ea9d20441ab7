"""`streamrec evaluate` on a user's own CSV files: reports, JSON shape, clear errors."""

import json

from typer.testing import CliRunner

from serving.cli import app


def write_log(tmp_path):
    events = tmp_path / "events.csv"
    rows = ["user_id,item_id,ts,type,value"]
    # two tastes: users who take a1 go on to a2 and a3; users who take b1 go on to b2 and b3
    for u in range(12):
        taste = "a" if u % 2 == 0 else "b"
        for step, n in enumerate((1, 2, 3)):
            rows.append(f"u{u},{taste}{n},{1_000_000 + u * 10 + step},click,")
    events.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,title,category\n"
        "a1,Trail running shoes,shoes\na2,Road running shoes,shoes\na3,Hiking boots,shoes\n"
        "b1,Espresso machine,kitchen\nb2,Coffee grinder,kitchen\nb3,Milk frother,kitchen\n"
    )
    return events, items


def test_evaluate_writes_json_markdown_and_plot(tmp_path):
    events, items = write_log(tmp_path)
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--events-file",
            str(events),
            "--items-file",
            str(items),
            "--models",
            "popularity,item-knn,hybrid",
            "--k",
            "2",
            "--windows",
            "2",
            "--json",
            str(out),
            "--reports-dir",
            str(tmp_path / "reports"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert set(payload["models"]) == {"popularity", "item-knn", "hybrid"}
    assert set(payload["models"]["hybrid"]) >= {
        "hr",
        "ndcg",
        "recall",
        "precision",
        "mrr",
        "auc",
        "coverage",
        "diversity",
    }
    assert payload["n_events"] == 36 and payload["n_scored"] == 24
    # the second and third step of each user follow the taste: co-occurrence learns it
    assert payload["models"]["hybrid"]["hr"] > payload["models"]["popularity"]["hr"]
    assert "\n| hybrid | " in (tmp_path / "reports" / "evaluation.md").read_text()
    assert (tmp_path / "reports" / "hr_over_time.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_explains_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1,i1\n")
    result = CliRunner().invoke(app, ["evaluate", "--events-file", str(bad)])
    assert result.exit_code == 2
    assert "user_id" in result.output and "lacks" in result.output
    events, _ = write_log(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", "--events-file", str(events), "--models", "content-only"])
    assert result.exit_code == 2 and "--items-file" in result.output


def test_an_id_only_log_with_re_orders_runs_the_hybrid_and_scores_the_repeats(tmp_path):
    """No item text: the hybrid runs without its content term. Households re-buy their staples
    every week: repeats are scored (the log has some) and reported apart; buy-again hits them."""
    events = tmp_path / "receipts.csv"
    day = 86_400_000
    rows = ["user_id,item_id,ts,type"]
    for week in range(10):
        for h in range(8):
            staple = f"staple-{h % 2}"
            rows.append(f"h{h},{staple},{week * 7 * day + h * 1000},purchase")
            rows.append(f"h{h},once-{week}-{h},{week * 7 * day + h * 1000 + 1},purchase")
    events.write_text("\n".join(rows) + "\n")
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        app,
        [
            *("evaluate", "--events-file", str(events), "--models", "popularity,hybrid", "--k", "3"),
            *("--json", str(out), "--reports-dir", str(tmp_path / "reports")),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    split = payload["repeats"]
    assert split["n_repeat"] == 8 * 9  # every staple purchase after the first week
    # due again each week, served and bought; the first weeks come before much re-buying was seen
    assert split["hr"]["repeat"]["hybrid"] > 0.75
    assert "## Repeat and first-time events" in (tmp_path / "reports" / "evaluation.md").read_text()

"""The serving bench's harness (``bench/serving.py``): the parts that need no peer venv.

Payload builders and answer parsers, wrk's summary, the results file, the tables and the
summary line; a real server process that starts but answers wrongly (its cells fail
with the reason); and, when wrk is installed, a tiny real run of keelson alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import serving  # noqa: E402
from serving_peers import keelson_peer, payloads  # noqa: E402
from serving_peers.base import Endpoint, Launch, Rows, ServedModel, Server  # noqa: E402

ROWS = Rows(
    columns=["age", "income", "plan"],
    types=["int64", "float64", "string"],
    data=[[30, 42.5, "basic"], [61, None, "pro"], [45, 70.25, "plus"]],
)


def served(tmp_path: Path, classes: list[str] | None = None) -> ServedModel:
    """A model folder with the bench's rows and expected probabilities (no pipeline)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "rows.json").write_text(ROWS.to_json(), encoding="utf-8")
    np.save(folder / "expected.npy", np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    return ServedModel("toy", "toy", "production", tmp_path, folder, classes or ["no", "yes"])


# --- payloads and answers ---------------------------------------------------------------


def test_v2_body_is_one_tensor_per_column_with_the_pandas_codec() -> None:
    body = payloads.v2_body(ROWS.head(2), "probabilities")
    assert body["parameters"] == {"content_type": "pd"}
    assert body["outputs"] == [{"name": "probabilities"}]
    assert body["inputs"] == [
        {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [30, 61]},
        {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [42.5, None]},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": ["basic", "pro"]},
    ]


def test_dataframe_split_and_records_carry_the_same_rows() -> None:
    split = payloads.dataframe_split_body(ROWS)["dataframe_split"]
    assert split == {"columns": ROWS.columns, "data": ROWS.data}
    records = payloads.records_body(ROWS)["rows"]
    assert records[1] == {"age": 61, "income": None, "plan": "pro"}
    assert [[r[c] for c in ROWS.columns] for r in records] == ROWS.data


def test_rows_survive_their_json_file() -> None:
    assert Rows.from_json(ROWS.to_json()) == ROWS


def test_v2_output_is_reshaped_and_a_missing_output_is_named() -> None:
    answer = {"outputs": [{"name": "probabilities", "shape": [2, 2], "data": [0.9, 0.1, 0.3, 0.7]}]}
    np.testing.assert_array_equal(
        payloads.v2_output(answer, "probabilities"), [[0.9, 0.1], [0.3, 0.7]]
    )
    with pytest.raises(ValueError, match=r"no output 'predict_proba'.*\['probabilities'\]"):
        payloads.v2_output(answer, "predict_proba")


def test_invocations_answer_is_read_in_the_models_class_order(tmp_path: Path) -> None:
    model = served(tmp_path, classes=["no", "yes"])
    answer = {"predictions": [{"label": "yes", "probabilities": {"yes": 0.8, "no": 0.2}}]}
    np.testing.assert_array_equal(keelson_peer.parse_invocations(answer, model), [[0.2, 0.8]])


def test_a_flat_list_is_not_a_probability_matrix() -> None:
    np.testing.assert_array_equal(payloads.matrix([[0.5, 0.5]]), [[0.5, 0.5]])
    with pytest.raises(ValueError, match="one list of probabilities per row"):
        payloads.matrix([0.5, 0.5])


def test_compare_names_the_shape_or_the_difference() -> None:
    expected = np.array([[0.9, 0.1]])
    assert serving.compare(expected + 5e-7, expected) == ""
    assert "differs from predict_proba by 1.00e-03" in serving.compare(expected + 1e-3, expected)
    assert serving.compare(np.zeros((2, 2)), expected) == "shape (2, 2), expected (1, 2)"


# --- wrk --------------------------------------------------------------------------------

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/v2/models/bank/infer
  2 threads and 8 connections
Requests/sec:    998.00
WRK_JSON {"requests": 1000, "duration_us": 2000000, "connect": 0, "read": 1, "write": 0, \
"status": 10, "timeout": 2, "p50_us": 7500, "p90_us": 9000, "p99_us": 12250, "max_us": 30000}
"""


def test_wrk_summary_counts_only_2xx_and_every_error() -> None:
    result = serving.parse_wrk(WRK_OUTPUT)
    assert result["req_s"] == pytest.approx(495.0)  # (1000 - 10 non-2xx) / 2 s
    assert (result["p50_ms"], result["p99_ms"], result["max_ms"]) == (7.5, 12.25, 30.0)
    assert (result["errors"], result["non2xx"], result["socket_errors"]) == (13, 10, 1)
    assert (result["timeouts"], result["requests"]) == (2, 1000)


def test_wrk_without_a_summary_says_what_it_printed() -> None:
    with pytest.raises(ValueError, match="no summary: unable to connect"):
        serving.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_uses_at_most_two_threads_and_passes_the_body() -> None:
    command = serving.wrk_command("http://h/x", Path("b.json"), Path("p.lua"), 32, 10)
    assert command[:5] == ["wrk", "-t", "2", "-c", "32"]
    assert command[-3:] == ["http://h/x", "--", "b.json"]
    assert serving.wrk_command("http://h/x", Path("b"), Path("p"), 1, 0.4)[2] == "1"


# --- results, tables and the summary line ---------------------------------------------


def row(server: str, n: int, conc: int, req_s: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {
        "model": "bank", "server": server, "rows": n, "conc": conc, "repeat": 0, "workers": 1,
        "status": "ok", "req_s": req_s, "rows_s": req_s * n, "p50_ms": p99 / 2, "p99_ms": p99,
        "errors": 0, "cpu_ms_req": 2.0, **extra,
    }  # fmt: skip


def test_results_resume_with_the_newest_row_of_each_cell(tmp_path: Path) -> None:
    path = tmp_path / "serving.csv"
    serving.append_result(path, row("keelson", 1, 8, 100.0, 10.0, status="failed"))
    serving.append_result(path, row("keelson", 1, 8, 300.0, 4.0))
    serving.append_result(path, row("mlflow", 1, 8, 80.0, 20.0))
    done = serving.read_results(path)
    assert len(done) == 2
    newest = done[("bank", "keelson", 1, 8, 0, 1)]
    assert (newest["status"], newest["req_s"], newest["rows"]) == ("ok", 300.0, 1)
    assert path.read_text().splitlines()[0].split(",") == serving.FIELDS


def matrix_rows() -> list[dict[str, Any]]:
    return [
        row("floor", 100, 1, 200.0, 6.0),
        row("keelson", 1, 8, 600.0, 20.0),
        row("keelson", 1, 8, 640.0, 30.0, repeat=1),
        row("keelson", 1, 8, 580.0, 25.0, repeat=2),
        row("bentoml", 1, 8, 150.0, 60.0),
        row("bentoml-batched", 1, 8, 200.0, 50.0),
        row("mlflow", 1, 8, 0.0, 0.0, status="failed"),
        row("keelson", 100, 8, 150.0, 80.0),
        row("mlserver", 100, 8, 90.0, 120.0),
    ]


def test_medians_over_repeats_and_failed_cells() -> None:
    stats = serving.medians(matrix_rows())
    keelson = stats[("bank", "keelson", 1, 8)]
    assert (keelson.req_s, keelson.p99_ms, keelson.runs) == (600.0, 25.0, 3)
    mlflow = stats[("bank", "mlflow", 1, 8)]
    assert (mlflow.failed, np.isnan(mlflow.req_s)) == (1, True)


def test_best_peer_ignores_keelson_the_floor_and_failures() -> None:
    stats = serving.medians(matrix_rows())
    best = serving.best_peer(stats, "bank", 1, 8)
    assert best is not None and best[0] == "bentoml-batched"
    assert serving.best_peer(stats, "bank", 1, 32) is None


def test_table_has_the_floor_each_server_and_the_ratio_to_the_best_peer() -> None:
    table = serving.model_table(serving.medians(matrix_rows()), "bank")
    assert table[0][:5] == ["floor", "100", "–", "200", "20.0k"]
    ratio = [r for r in table if r[0] == "keelson ÷ bentoml-batched"]
    assert ratio == [["keelson ÷ bentoml-batched", "1", "8", "3.00x", "", "", "0.50x", "", ""]]
    assert ["mlflow", "1", "8", "failed", "", "", "", "", ""] in table
    text = serving.render("bank", table, markdown=False)
    assert text.splitlines()[1].split() == [h for h in " ".join(serving.HEADER).split()]
    assert serving.render("bank", table, markdown=True).count("\n| ") == len(table) + 1


def test_summary_line_gives_the_ratios_and_the_goals() -> None:
    line = serving.summary_line(serving.medians(matrix_rows()), ["bank"], workers=1)
    assert line == (
        "serving (workers=1): bank: 1-row c8 keelson 600 req/s = 3.00x best peer "
        "(bentoml-batched 200), p99 0.50x; 100-row c8 keelson 15.0k rows/s = 0.75x floor; "
        "goals met 2/2"
    )


def test_summary_line_without_measurements_says_so() -> None:
    line = serving.summary_line({}, ["lgbm-500x40"], workers=2)
    assert line == (
        "serving (workers=2): lgbm-500x40: keelson or the peers not measured; goals met 0/0"
    )


# --- real processes ---------------------------------------------------------------------

WRONG_SERVER = """
import http.server, json, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer({"ready": True})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.answer([[0.5, 0.5]] * len(body["rows"]))

    def answer(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def fake_server(code: str) -> Server:
    endpoint = Endpoint(
        "fake",
        "/predict",
        lambda model, rows: payloads.records_body(rows),
        lambda answer, model: payloads.matrix(answer),
    )
    return Server(
        "fake",
        None,
        (endpoint,),
        lambda model, port, options, work: Launch(
            [sys.executable, "-c", code, str(port)], ready_path="/ready"
        ),
    )


def bench_args(tmp_path: Path, *more: str) -> Any:
    return serving.parse_args(
        ["--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r.csv"), *more]
    )


def test_wrong_answers_fail_the_cells_before_any_load(tmp_path: Path) -> None:
    args = bench_args(tmp_path, "--rows", "1", "3", "--conc", "1", "8")
    serving.Run(args).serve(served(tmp_path), fake_server(WRONG_SERVER))
    rows = list(serving.read_results(args.results).values())
    assert len(rows) == 4
    assert {r["status"] for r in rows} == {"failed"}
    assert (
        "fake: wrong answers: 1-row answer: differs from predict_proba by 4.00e-01"
        in (rows[0]["error"])
    )


def test_a_server_that_exits_fails_its_cells_with_its_last_words(tmp_path: Path) -> None:
    args = bench_args(tmp_path, "--rows", "1", "--conc", "8")
    crash = "import sys; print('no model here'); sys.exit(3)"
    serving.Run(args).serve(served(tmp_path), fake_server(crash))
    (only,) = serving.read_results(args.results).values()
    assert only["status"] == "failed"
    assert only["error"] == "fake: exited with 3: no model here"


NO_WRK = "wrk is not installed (apt-get install wrk, or bench/serving.py --setup)"


@pytest.mark.skipif(shutil.which("wrk") is None, reason=NO_WRK)
def test_a_tiny_real_run_of_keelson_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    serving.main(
        [
            "--models", "lgbm", "--lgbm-trees", "20", "--lgbm-features", "5",
            "--servers", "keelson", "--rows", "1", "100", "--conc", "8",
            "--duration", "1", "--warmup", "0", "--floor-calls", "20", "--floor-seconds", "0.2",
            "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r.csv"),
        ]
    )  # fmt: skip
    rows = serving.read_results(tmp_path / "r.csv")
    cells = {(r["server"], r["rows"]) for r in rows.values() if r["status"] == "ok"}
    servers = ("keelson", "keelson-invocations", "floor", "floor-json")
    assert cells == {(s, n) for s in servers for n in (1, 100)}
    for cell in (r for r in rows.values() if r["server"].startswith("keelson")):
        assert cell["req_s"] > 0
        assert (cell["non2xx"], cell["socket_errors"], cell["timeouts"]) == (0, 0, 0), cell
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("serving (workers=1): lgbm-20x5: 100-row c8 keelson ")
    assert json.loads((tmp_path / "cache" / "models" / "lgbm-20x5" / "rows.json").read_text())

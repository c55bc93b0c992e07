"""The `fastrnn` command: demo and bench (tiny sizes; speed itself is not asserted)."""
import json

import pytest

from fastrnn.__main__ import main


def _json_out(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_demo_runs_and_checks_gradients(capsys):
    assert main(["demo", "--batch", "2", "--seq-len", "3", "--input-size", "2",
                 "--hidden", "3", "--repeat", "1"]) == 0
    assert "gradients match the NumPy reference" in capsys.readouterr().out


def test_bench_table_json(capsys):
    res = _json_out(capsys, ["bench", "--cells", "lstm,rnn", "--shape", "2,3,4,5",
                             "--modes", "infer,train", "--budget", "0", "--json",
                             "--no-torch"])
    rows = res["table"]["rows"]
    assert [(r["cell"], r["mode"]) for r in rows] == [("lstm", "infer"), ("lstm", "train"),
                                                      ("rnn", "infer"), ("rnn", "train")]
    for r in rows:
        assert r["fastrnn_ms"] > 0 and r["numpy_ms"] > 0 and r["fastrnn_gflops"] > 0
        assert r["numpy_over_fastrnn"] == pytest.approx(r["numpy_ms"] / r["fastrnn_ms"])
        assert "torch_ms" not in r
    assert res["table"]["gemm_peak_gflops"] > 0


def test_bench_stream_and_memory_json(capsys):
    res = _json_out(capsys, ["bench", "--stream", "--cells", "gru", "--hidden", "8",
                             "--input-size", "3", "--budget", "0", "--json", "--no-torch"])
    assert res["stream"]["rows"][0]["fastrnn_us"] > 0
    res = _json_out(capsys, ["bench", "--memory", "--cells", "rnn", "--shape", "2,3,4,5",
                             "--modes", "train", "--json", "--no-torch"])
    assert res["memory"]["rows"][0]["fastrnn_mib"] >= 0


@pytest.mark.parametrize("argv, message", [
    (["bench", "--shape", "1,2,3"], "shape must be B,T,I,H"),
    (["bench", "--cells", "lstm,transformer"], "choose from lstm, gru, rnn"),
    (["bench", "--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    (["train", "sine", "--hidden", "0"], "argument --hidden: must be an integer >= 1"),
    (["train", "--steps", "x"], "argument --steps: must be an integer >= 1, got 'x'"),
])
def test_bench_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith(f"usage: fastrnn {argv[0]} ")     # the subcommand's usage


def test_help_shows_defaults_and_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "fastrnn COMMAND --help" in top
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train = capsys.readouterr().out
    for text in ("hidden size (default: adding 64, copy 128", "--threads", "(default: adam)",
                 "sum-classify  is the sum of 50"):
        assert text in train.replace("\n                        ", " ")
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    bench = capsys.readouterr().out
    assert "(default: 2.0)" in bench and "(default: None)" not in bench
    assert "(default: False)" not in bench


def test_bench_rounds_in_help_match_the_run(capsys):
    from fastrnn import bench
    res = _json_out(capsys, ["bench", "--cells", "rnn", "--shape", "2,3,4,5", "--modes",
                             "infer", "--budget", "0", "--json", "--no-torch"])
    assert res["table"]["rows"][0]["rounds"] == bench.MIN_ROUNDS


def test_one_thread_is_singular(capsys):
    assert main(["bench", "--stream", "--cells", "rnn", "--hidden", "4", "--input-size",
                 "2", "--budget", "0", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 thread" in out and "1 threads" not in out


def test_bench_word_lm_json(capsys):
    res = _json_out(capsys, ["bench", "--word-lm", "--budget", "0", "--json", "--no-torch"])
    row = res["word_lm"]
    assert row["vocab"] == 5000 and row["fastrnn_tokens_per_s"] > 0 and "torch_ms" not in row


def test_bench_regularized_rows_json(capsys):
    res = _json_out(capsys, ["bench", "--cells", "layernorm_lstm,gru_zoneout,rnn_rdrop",
                             "--shape", "2,3,4,5", "--modes", "infer,train", "--budget", "0",
                             "--json", "--no-torch"])
    rows = res["table"]["rows"]
    assert [r["cell"] for r in rows] == ["layernorm_lstm"] * 2 + ["gru_zoneout"] * 2 + \
        ["rnn_rdrop"] * 2
    for r in rows:
        assert r["plain_ms"] > 0 and "numpy_ms" not in r


def test_train_with_regularizers(capsys):
    res = _json_out(capsys, ["train", "sine", "--steps", "100", "--layer-norm", "--zoneout",
                             "0.1", "--recurrent-dropout", "0.2", "--weight-drop", "0.1",
                             "--input-dropout", "0.1", "--json", "--quiet"])
    assert res["regularizers"] == {"layer_norm": True, "zoneout": 0.1,
                                   "recurrent_dropout": 0.2, "weight_drop": 0.1,
                                   "input_dropout": 0.1}
    assert res["steps"] == 100
    assert main(["train", "sine", "--steps", "100", "--zoneout", "0.05,0.2", "--quiet"]) == 0
    assert "zoneout=(0.05, 0.2)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--zoneout", "1.5"], "argument --zoneout: expected a probability in [0, 1)"),
    (["train", "--recurrent-dropout", "x"], "expected a probability in [0, 1), got 'x'"),
    (["train", "--zoneout", "0.1,0.2,0.3"], "expected Z or Z_H,Z_C"),
])
def test_train_bad_regularizers(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_train_refuses_layer_norm_for_rnn(capsys):
    assert main(["train", "sine", "--cell", "rnn", "--layer-norm", "--steps", "10"]) == 2
    assert "layer_norm=True is for LSTM and GRU layers" in capsys.readouterr().err

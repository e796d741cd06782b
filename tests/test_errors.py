"""Errors raised in Ray workers travel to the driver by pickle and must keep their fields."""

from __future__ import annotations

import pickle

from medray.errors import ConfigError, SourceError


def test_config_and_source_errors_survive_pickling():
    err = pickle.loads(pickle.dumps(ConfigError("model.tokenizer", "no tokenizer at x", source="conf.yaml")))
    assert (err.key, err.message, err.source) == ("model.tokenizer", "no tokenizer at x", "conf.yaml")
    assert str(err) == "conf.yaml: config key 'model.tokenizer': no tokenizer at x"
    src = pickle.loads(pickle.dumps(SourceError("a.obo", 12, "bad stanza")))
    assert (src.path, src.line, str(src)) == ("a.obo", 12, "a.obo:12: bad stanza")

"""The `chatterbox-operator` command line."""

from chatterbox_operator.__main__ import parse_args


def test_defaults_watch_all_namespaces_standalone_with_liveness() -> None:
    args = parse_args([])
    assert args.namespace == []
    assert args.peering is None
    assert args.liveness == "http://0.0.0.0:8080/healthz"


def test_namespaces_and_peering() -> None:
    args = parse_args(
        ["-n", "speech", "--namespace", "tts-*", "--peering", "tts", "--priority", "5", "--liveness", ""]
    )
    assert args.namespace == ["speech", "tts-*"]
    assert (args.peering, args.priority) == ("tts", 5)
    assert args.liveness == ""

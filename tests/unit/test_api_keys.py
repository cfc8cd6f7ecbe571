"""The one API-key check every face uses."""


def test_one_key_check_for_every_face():
    """HTTP's Authorization header, the WebSocket's bearer subprotocol and gRPC's metadata all
    ask core.domain.api_keys: the same answers for the same keys, every shape of a wrong one."""
    from core.domain.api_keys import is_known_key

    keys = ("k1", "sk-" + "x" * 60, "ünï")
    for given in ("k1", " k1 ", "sk-" + "x" * 60, "ünï"):
        assert is_known_key(given, keys)
    for given in (None, "", "   ", "k", "k1k1", "K1", "sk-" + "x" * 59, "x" * 10_000, "k1\x00"):
        assert not is_known_key(given, keys)
    assert not is_known_key("k1", ())

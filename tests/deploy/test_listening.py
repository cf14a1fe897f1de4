"""The /proc socket reader the ingress bind test relies on: addresses decoded as `ss -ltn` shows them."""

from __future__ import annotations

import os
import socket

from listening import _address, listeners


def test_kernel_addresses_decode_to_what_ss_shows() -> None:
    assert _address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _address("00000000:2328") == ("0.0.0.0", 9000)
    assert _address("00000000000000000000000000000000:2328") == ("::", 9000)
    assert _address("0000000000000000FFFF00000100007F:0050") == ("127.0.0.1", 80)  # v4-mapped, as ss prints it
    assert _address("000080FE00000000FF005450B6AD1DFE:0016") == ("fe80::5054:ff:fe1d:adb6", 22)


def test_a_processs_listening_sockets_are_found_with_their_bound_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as loopback, socket.socket(socket.AF_INET6) as anywhere:
        loopback.bind(("127.0.0.1", 0))
        loopback.listen()
        anywhere.bind(("::", 0))
        anywhere.listen()
        mine = {(s.host, s.port, s.everywhere) for s in listeners([os.getpid()])}
        assert ("127.0.0.1", loopback.getsockname()[1], False) in mine
        assert ("::", anywhere.getsockname()[1], True) in mine

"""Scanner decoding from recorded bytes, key events and HID POS reports (no device needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.scanner.decoding import (
    Debouncer,
    LineFramer,
    ScanData,
    ScanGarbage,
    ScanRules,
    clean,
)
from drivers.scanner.hidpos import HidPosDecoder
from drivers.scanner.keymap import EV_KEY, KeyDecoder

SYN = 0  # EV_SYN, which evdev interleaves with every key event


def test_a_serial_line_is_a_scan_with_the_suffix_removed() -> None:
    framer = LineFramer(ScanRules(suffix=b"\r\n"))
    assert framer.feed(b"73100000") == []
    assert framer.feed(b"00001\r\nTK0000") == [ScanData("7310000000001")]
    assert framer.feed(b"0000DEMO1\r\n") == [ScanData("TK00000000DEMO1")]


def test_prefix_and_aim_identifier_are_stripped_and_the_symbology_kept() -> None:
    rules = ScanRules(prefix="#", aim_ids=True)
    assert clean(b"#]E07310000000001", rules) == ScanData("7310000000001", "ean-upc")
    assert clean(b"]Q1TK00000000DEMO1", rules) == ScanData("TK00000000DEMO1", "qr")
    assert clean(b"]C1\x1d0107310000000001", rules).code == "\x1d0107310000000001"


def test_garbage_is_reported_never_raised() -> None:
    rules = ScanRules(max_length=16)
    assert isinstance(clean(b"\xff\xfe", rules), ScanGarbage)
    assert isinstance(clean(b"ab\x07cd", rules), ScanGarbage)
    assert isinstance(clean(b"", rules), ScanGarbage)
    assert isinstance(clean(b"1" * 17, rules), ScanGarbage)


def test_an_endless_line_is_cut_off_and_reported_once() -> None:
    framer = LineFramer(ScanRules(max_length=8))
    out = framer.feed(b"x" * 100)
    assert len(out) == 1 and "without a line end" in out[0].reason
    assert framer.feed(b"x" * 5 + b"\r") == []  # the rest of the same line
    assert framer.feed(b"12345\r") == [ScanData("12345")]


def test_debounce_drops_a_repeat_within_the_window_only() -> None:
    now = [100.0]
    debouncer = Debouncer(0.8, clock=lambda: now[0])
    assert debouncer.accept("A")
    now[0] += 0.3
    assert not debouncer.accept("A")
    assert debouncer.accept("B")
    now[0] += 0.9
    assert debouncer.accept("A")


def keys(*codes: int, shift: bool = False) -> list[tuple[int, int, int]]:
    """Press and release each key code, as a wedge scanner types, with SYN reports."""
    events = []
    for code in codes:
        if shift:
            events.append((EV_KEY, 42, 1))
        events += [(EV_KEY, code, 1), (SYN, 0, 0), (EV_KEY, code, 0), (SYN, 0, 0)]
        if shift:
            events.append((EV_KEY, 42, 0))
    return events


# Recorded from a wedge scanner reading EAN-13 7310000000001 then ENTER: key
# codes 9 (KEY_8)... are physical positions, the same on any keyboard layout.
EAN_7310000000001 = keys(8, 4, 2, 11, 11, 11, 11, 11, 11, 11, 11, 11, 2) + keys(28)


def decode(events: list[tuple[int, int, int]]) -> list[str]:
    decoder = KeyDecoder()
    return [line for e in events if (line := decoder.feed(*e)) is not None]


def test_wedge_digits_decode_the_same_whatever_the_keyboard_layout() -> None:
    # On a French AZERTY layout these keys would type "è'&àààààààààà&" and on
    # a Swedish one the top row is still digits but '-' would be '+': tilld
    # reads key codes, so the code is right on every till.
    assert decode(EAN_7310000000001) == ["7310000000001"]
    assert decode(keys(2, 12, 3) + keys(28)) == ["1-2"]


def test_wedge_shifted_letters_and_keypad() -> None:
    ticket = (
        keys(20, 37, shift=True) + keys(82, 82, 79) + keys(96)
    )  # "TK" + keypad "001" + KP enter
    assert decode(ticket) == ["TK001"]


def test_wedge_alt_keypad_codes_type_any_character() -> None:
    # Alt + 0197 on the keypad is Å in scanners' "Alt mode".
    alt = [(EV_KEY, 56, 1), *keys(82, 79, 73, 71), (EV_KEY, 56, 0)]
    assert decode(alt + keys(28)) == ["\u00c5"]


def test_wedge_unknown_keys_become_garbage_not_a_wrong_code() -> None:
    [line] = decode(keys(2, 59, 3) + keys(28))  # 59 is F1
    assert isinstance(clean(line.encode(), ScanRules()), ScanGarbage)


def test_wedge_autorepeat_does_not_double_characters() -> None:
    events = [(EV_KEY, 2, 1), (EV_KEY, 2, 2), (EV_KEY, 2, 2), (EV_KEY, 2, 0), *keys(28)]
    assert decode(events) == ["1"]


def hid_report(code: bytes, aim: bytes = b"]E0", continued: bool = False) -> bytes:
    report = bytearray(64)
    report[0] = 0x02
    report[1] = len(code)
    report[2:5] = aim
    report[5 : 5 + len(code)] = code
    report[63] = 0x01 if continued else 0x00
    return bytes(report)


def test_hid_pos_report_gives_code_and_symbology() -> None:
    decoder = HidPosDecoder()
    assert decoder.feed(hid_report(b"7310000000001")) == ScanData("7310000000001", "ean-upc")


def test_hid_pos_long_code_spans_reports() -> None:
    decoder = HidPosDecoder()
    data = b"TK" + b"0123456789" * 7
    assert decoder.feed(hid_report(data[:56], b"]Q1", continued=True)) is None
    assert decoder.feed(hid_report(data[56:], b"]Q1")) == ScanData(data.decode(), "qr")


def test_hid_pos_bad_reports_are_garbage_or_ignored() -> None:
    decoder = HidPosDecoder()
    assert decoder.feed(b"\x04" + bytes(63)) is None  # not a scanned data report
    assert isinstance(decoder.feed(b"\x02\x05"), ScanGarbage)  # truncated
    bad = bytearray(hid_report(b"123"))
    bad[1] = 200
    assert isinstance(decoder.feed(bytes(bad)), ScanGarbage)
    assert decoder.feed(hid_report(b"12345")) == ScanData("12345", "ean-upc")


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_random_bytes_never_crash_the_line_framer(chunks: list[bytes]) -> None:
    framer = LineFramer(ScanRules(max_length=32))
    for chunk in chunks:
        for result in framer.feed(chunk):
            assert isinstance(result, ScanData | ScanGarbage)
    assert len(framer._buffer) <= 4 * 32 + 1


@given(st.lists(st.binary(min_size=0, max_size=70), max_size=20))
def test_random_reports_never_crash_the_hid_pos_decoder(reports: list[bytes]) -> None:
    decoder = HidPosDecoder()
    for report in reports:
        result = decoder.feed(report)
        assert result is None or isinstance(result, ScanData | ScanGarbage)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 300), st.integers(-1, 3))))
def test_random_key_events_never_crash_the_wedge_decoder(events) -> None:
    decoder = KeyDecoder(max_length=64)
    for event in events:
        line = decoder.feed(*event)
        assert line is None or len(line) <= 200

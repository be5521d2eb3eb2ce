"""The serial ZVT link on a real pty: ACK/NAK, bounded resends, inter-byte timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty

import pytest

from drivers.zvt.apdu import Apdu
from drivers.zvt.framing import ACK_BYTE, NAK_BYTE, encode_frame
from drivers.zvt.link import LinkTimeout, SerialLink, SerialTiming

SALE_FRAME = bytes.fromhex("10 02 06 01 07 04 00 00 00 00 10 10 00 10 03 62 91")


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(slave, False)
    yield master, slave
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)


async def read_until(fd: int, size: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size:
        assert time.monotonic() < deadline, f"only {data.hex(' ')} arrived"
        try:
            data += os.read(fd, size - len(data))
        except BlockingIOError:
            await asyncio.sleep(0.01)
    return data


def test_a_good_frame_is_acked_and_delivered(pty_pair):
    master, slave = pty_pair

    async def run():
        link = SerialLink(master)
        os.write(slave, SALE_FRAME)
        apdu = await link.receive(5)
        reply = await read_until(slave, 1)
        link.close()
        return apdu, reply

    apdu, reply = asyncio.run(run())
    assert apdu == Apdu(0x06, 0x01, bytes.fromhex("04 00 00 00 00 10 00"))
    assert reply == ACK_BYTE


def test_a_frame_that_stalls_between_bytes_is_naked(pty_pair):
    master, slave = pty_pair

    async def run():
        link = SerialLink(master, SerialTiming(inter_byte_timeout_s=0.1))
        os.write(slave, SALE_FRAME[:6])
        reply = await read_until(slave, 1)
        counters = link.counters.naks_sent
        link.close()
        return reply, counters

    reply, naks = asyncio.run(run())
    assert reply == NAK_BYTE and naks == 1


def test_sending_gives_up_after_the_bounded_resends(pty_pair):
    master, slave = pty_pair

    async def run():
        link = SerialLink(master, SerialTiming(ack_timeout_s=0.1, max_resends=2))
        with pytest.raises(LinkTimeout, match="after 3 tries"):
            await link.send(Apdu(0x80, 0x00))
        sent = await read_until(slave, 3 * len(encode_frame(bytes.fromhex("80 00 00"))))
        link.close()
        return sent, link.counters

    sent, counters = asyncio.run(run())
    assert sent == encode_frame(bytes.fromhex("80 00 00")) * 3
    assert counters.resends == 2


def test_a_nak_makes_the_sender_repeat_the_frame(pty_pair):
    master, slave = pty_pair
    frame = encode_frame(bytes.fromhex("80 00 00"))

    async def run():
        link = SerialLink(master, SerialTiming(ack_timeout_s=2))
        sending = asyncio.create_task(link.send(Apdu(0x80, 0x00)))
        assert await read_until(slave, len(frame)) == frame
        os.write(slave, NAK_BYTE)
        assert await read_until(slave, len(frame)) == frame
        os.write(slave, ACK_BYTE)
        await asyncio.wait_for(sending, 5)
        link.close()
        return link.counters

    counters = asyncio.run(run())
    assert counters.naks_received == 1 and counters.resends == 1

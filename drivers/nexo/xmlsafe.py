"""Parsing XML from the network without trusting it.

The stdlib's expat parser does not fetch external entities, but it does
expand internal ones, so a document with a DTD can grow a few hundred bytes
into gigabytes ("billion laughs"). nexo messages never carry a DTD, an
entity declaration or a processing instruction beyond the XML declaration,
so any of these is refused before parsing, and the size of what is parsed
is capped. Namespaces, if a terminal sends them, are dropped from tags.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .errors import NexoProtocolError

# A payment response with two base64 receipts is a few kB; 256 kB leaves room
# for verbose terminals while bounding what one answer can cost.
MAX_XML_BYTES = 256 * 1024
MAX_ELEMENTS = 2000

_FORBIDDEN = re.compile(rb"<!DOCTYPE|<!ENTITY|<\?(?!xml[\s?])", re.IGNORECASE)


def parse_xml(data: bytes) -> ET.Element:
    """The root element of `data`, with namespaces dropped from every tag."""
    if not isinstance(data, bytes | bytearray):
        raise NexoProtocolError("XML must be bytes")
    if len(data) > MAX_XML_BYTES:
        raise NexoProtocolError(f"XML of {len(data)} bytes is over the {MAX_XML_BYTES} byte cap")
    if not data.strip():
        raise NexoProtocolError("empty XML")
    found = _FORBIDDEN.search(data)
    if found:
        raise NexoProtocolError(
            f"XML with {found.group().decode('ascii', 'replace')!r} at byte {found.start()} "
            "refused (no DTDs, entities or processing instructions)"
        )
    parser = ET.XMLParser()
    try:
        parser.feed(bytes(data))
        root = parser.close()
    except ET.ParseError as exc:
        raise NexoProtocolError(f"not well-formed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding name
        raise NexoProtocolError(f"unreadable XML: {exc}") from None
    for count, element in enumerate(root.iter(), 1):
        if count > MAX_ELEMENTS:
            raise NexoProtocolError(f"XML with over {MAX_ELEMENTS} elements refused")
        if not isinstance(element.tag, str):
            raise NexoProtocolError("XML with a comment or processing instruction node")
        element.tag = element.tag.rpartition("}")[2]
        for key in [k for k in element.attrib if k.startswith("{")]:
            element.attrib[key.rpartition("}")[2]] = element.attrib.pop(key)
    return root

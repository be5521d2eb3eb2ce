"""ESC/POS receipt printers and the cash drawer behind them.

`document.py` is what a receipt is made of (lines, columns, QR codes),
`render.py` turns a document into ESC/POS bytes with python-escpos,
`status.py` reads the printer's real-time status bytes, `links.py` carries
bytes over TCP, serial or USB, and `printer.py` is the supervised device.
"""

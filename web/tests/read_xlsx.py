"""Reads an .xlsx workbook's cells, independently of the writer that made it: the browser
test compares them with the CSV of the same answer. Prints JSON: [[sheet name, rows]], each
row a list of cells (text, or a number as text; an empty cell is "")."""
import json
import re
import sys
import zipfile
import xml.etree.ElementTree as ET

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def column(ref):
    letters = re.match(r"[A-Z]+", ref).group(0)
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def main(path):
    book = zipfile.ZipFile(path)
    names = set(book.namelist())
    shared = []
    if "xl/sharedStrings.xml" in names:
        for si in ET.fromstring(book.read("xl/sharedStrings.xml")).findall("m:si", NS):
            shared.append("".join(t.text or "" for t in si.iter("{%s}t" % NS["m"])))
    rels = {
        r.get("Id"): r.get("Target")
        for r in ET.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    }
    out = []
    for sheet in ET.fromstring(book.read("xl/workbook.xml")).find("m:sheets", NS):
        target = rels[sheet.get(REL)].lstrip("/")
        target = target if target.startswith("xl/") else "xl/" + target
        rows = []
        for row in ET.fromstring(book.read(target)).iter("{%s}row" % NS["m"]):
            cells = []
            for c in row.findall("m:c", NS):
                i = column(c.get("r"))
                while len(cells) < i:
                    cells.append("")
                v = c.find("m:v", NS)
                text = "" if v is None else v.text or ""
                if c.get("t") == "s":
                    text = shared[int(text)]
                elif c.get("t") == "inlineStr":
                    text = "".join(t.text or "" for t in c.iter("{%s}t" % NS["m"]))
                cells.append(text)
            rows.append(cells)
        out.append([sheet.get("name"), rows])
    print(json.dumps(out))


main(sys.argv[1])

#!/usr/bin/env python3
# Writes 27-xlsx-attachment.eml and 28-xlsx-damaged.eml: python3 make-xlsx-messages.py .
# Builds the XLSX corpus messages (the workbook XML is what Excel writes, trimmed).
import base64, io, zipfile, sys
def workbook(rows, shared=True):
    strings, idx = [], {}
    def cell(r, c, v):
        ref = "ABCDEFGH"[c] + str(r)
        if isinstance(v, (int, float)):
            return f'<c r="{ref}"><v>{v}</v></c>'
        if shared:
            if v not in idx:
                idx[v] = len(strings); strings.append(v)
            return f'<c r="{ref}" t="s"><v>{idx[v]}</v></c>'
        return f'<c r="{ref}" t="inlineStr"><is><t>{v}</t></is></c>'
    body = "".join(f'<row r="{r+1}">' + "".join(cell(r+1, c, v) for c, v in enumerate(row) if v is not None) + '</row>' for r, row in enumerate(rows))
    sheet = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{body}</sheetData></worksheet>'
    sst = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" uniqueCount="%d">%s</sst>' % (len(strings), len(strings), "".join(f"<si><t>{s}</t></si>" for s in strings))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
        z.writestr("_rels/.rels", '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Bestellung" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        z.writestr("xl/sharedStrings.xml", sst)
    return buf.getvalue()
def mail(mid, subject, text, data, name):
    b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (f'From: purchasing@nordwerk.example\r\nTo: orders@shop.example\r\nSubject: {subject}\r\n'
            f'Date: Tue, 11 Mar 2025 09:00:00 +0100\r\nMessage-ID: <{mid}@nordwerk.example>\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="xlsx-b"\r\n\r\n--xlsx-b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n'
            f'{text}\r\n--xlsx-b\r\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name="{name}"\r\n'
            f'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="{name}"\r\n\r\n{b64}--xlsx-b--\r\n')
rows = [["Pos", "SKU", "Beschreibung", "Quantity"], [1, "WIDGET-1", "Widget blau", 3], [2, "gadget-7", "Gadget", 2], [None, None, "Summe", None], [None, "Total", None, 5]]
good = workbook(rows)
out = sys.argv[1]
open(f"{out}/27-xlsx-attachment.eml", "w", newline="").write(mail("xlsx-27", "Order PO: NW-881", "Please find our order attached.\r\nTotal: 5", good, "order NW-881.xlsx"))
open(f"{out}/28-xlsx-damaged.eml", "w", newline="").write(mail("xlsx-28", "Order", "Order attached.", good[: len(good) // 2], "order.xlsx"))

"""Verifies every DKIM-Signature of one message with dkimpy (Debian's python3-dkim), an
implementation independent of Rebound's. Reads JSON on stdin: {"message": base64, "records":
{"selector._domainkey.domain": "v=DKIM1; ..."}}; the key records come from that map, never
from the network. Prints JSON: one entry per signature, top first."""
import base64
import json
import re
import sys

import dkim

request = json.load(sys.stdin)
message = base64.b64decode(request["message"])
records = {name.lower().rstrip("."): text for name, text in request["records"].items()}
asked = []


def dnsfunc(name, timeout=5):
    key = name.decode("ascii").lower().rstrip(".")
    asked.append(key)
    text = records.get(key)
    return text.encode("ascii") if text is not None else None


verifier = dkim.DKIM(message)
count = len([1 for name, _ in verifier.headers if name.lower() == b"dkim-signature"])
results = []
for idx in range(count):
    entry = {"index": idx}
    try:
        entry["valid"] = bool(verifier.verify(idx=idx, dnsfunc=dnsfunc))
    except dkim.DKIMException as error:
        entry["valid"] = False
        entry["error"] = str(error)
    fields = verifier.signature_fields or {}
    for tag in ("d", "s", "a", "c", "h"):
        value = fields.get(tag.encode())
        if value is not None:
            entry[tag] = re.sub(r"\s+", "", value.decode("latin1"))
    results.append(entry)
print(json.dumps({"signatures": results, "asked": asked}))

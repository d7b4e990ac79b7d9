#!/usr/bin/env python3
"""Writes the hand-made seeds of the `ops` fuzz target (fuzz/seeds/ops/) from readable
scenarios, following the decoder in core/tests/ops_model/mod.rs. Run from the repo root."""
import os

SKU = {"A": 0, "B": 1, "C": 2, "": 3}
WH = {"w1": 0, "w2": 1}

def line_byte(s, w, q):
    for x in range(256):
        sku = 3 if x >= 0xF8 else x % 3
        qty = 0 if 0xF0 <= x < 0xF8 else ((x >> 3) & 3) + 1
        if sku == SKU[s] and (x >> 2) % 2 == WH[w] and qty == q:
            return x
    raise ValueError((s, w, q))

def pay_bytes(p, o, ok, currency_ok=True):
    for x in range(256):
        if (x & 7) % 6 == p and (x & 0x40 == 0) == ok and \
           (x & 0x80 == 0 or x & 0x38 != 0) == currency_ok:
            return [x, o]
    raise ValueError((p, o, ok, currency_ok))

def enc(ops, disk):
    out = [1 if disk else 0]
    for op in ops:
        k = op[0]
        if k == "set":
            out += [0, SKU[op[1]], WH[op[2]], op[3]]
        elif k == "adjust":  # sku wh delta id
            out += [2, SKU[op[1]], WH[op[2]], op[3] + 6, op[4]]
        elif k == "reserve":  # order, [(s,w,q)], ttl
            lines = op[2]
            out += [3 + 16 * (len(lines) - 1), op[1]] + [line_byte(*l) for l in lines] + [op[3]]
        elif k == "commit":
            out += [7, op[1]]
        elif k == "release":
            out += [9, op[1]]
        elif k == "expire":  # ms/40, 255 = a day
            out += [10, op[1]]
        elif k == "advance":  # ms/25
            out += [11, op[1]]
        elif k == "pay":
            out += [12] + pay_bytes(*op[1:])
        elif k == "checkpoint":
            out += [14]
        elif k == "reopen":
            out += [15]
    return bytes(out)

SEEDS = {
    "basic-memory": (False, [
        ("set", "A", "w1", 10), ("set", "B", "w2", 3),
        ("reserve", 0, [("A", "w1", 2), ("B", "w2", 1)], 3),
        ("reserve", 0, [("A", "w1", 2), ("B", "w2", 1)], 3),   # replay
        ("reserve", 0, [("A", "w1", 1)], 3),                   # conflict
        ("reserve", 1, [("B", "w2", 3)], 2),                   # short
        ("commit", 0), ("commit", 0), ("release", 0),
        ("reserve", 2, [("A", "w1", 4), ("A", "w1", 1)], 1),   # duplicate line
        ("reserve", 3, [("", "w1", 4)], 1),                    # empty sku
        ("reserve", 4, [("A", "w1", 4)], 0),                   # ttl 0
        ("set", "A", "w1", 0),                                 # below reserved? none left
    ]),
    "expiry-and-adjust": (False, [
        ("set", "C", "w1", 5),
        ("adjust", "C", "w1", 3, 1), ("adjust", "C", "w1", 3, 1), ("adjust", "C", "w1", -3, 1),
        ("reserve", 5, [("C", "w1", 4)], 1),
        ("adjust", "C", "w1", -6, 2),                          # below reserved
        ("expire", 20), ("expire", 10),
        ("release", 5), ("commit", 5),
        ("expire", 255), ("expire", 255), ("adjust", "C", "w1", 3, 1),  # key pruned: applies
    ]),
    "payments": (False, [
        ("set", "A", "w1", 4), ("set", "B", "w1", 4),
        ("reserve", 0, [("A", "w1", 2)], 2), ("pay", 0, 0, True), ("pay", 0, 0, True),
        ("pay", 0, 0, False), ("pay", 0, 1, True),             # conflicts
        ("reserve", 1, [("B", "w1", 1)], 1), ("pay", 1, 1, False), ("pay", 2, 1, True),  # refund
        ("reserve", 2, [("A", "w1", 1), ("B", "w1", 2)], 1), ("advance", 60),
        ("pay", 3, 2, True),                                   # late payment, stock there
        ("reserve", 3, [("B", "w1", 2)], 1), ("advance", 60), ("set", "B", "w1", 1),
        ("pay", 4, 3, True),                                   # late, no stock: refund
        ("pay", 5, 3, True), ("pay", 1, 1, True, False),       # invalid id, currency
        ("reserve", 4, [("A", "w1", 1)], 1), ("advance", 40), ("pay", 2, 4, False),
    ]),
    "disk-reopen": (True, [
        ("set", "A", "w1", 9), ("set", "B", "w2", 9),
        ("reserve", 0, [("A", "w1", 2), ("B", "w2", 2)], 4), ("reserve", 1, [("A", "w1", 1)], 1),
        ("adjust", "A", "w1", 2, 0), ("pay", 0, 0, True),
        ("checkpoint",), ("reserve", 2, [("B", "w2", 3)], 2), ("reopen",),
        ("adjust", "A", "w1", 2, 0), ("pay", 0, 0, True), ("reserve", 2, [("B", "w2", 3)], 2),
        ("expire", 60), ("reopen",), ("commit", 2), ("expire", 255), ("checkpoint",),
        ("reopen",), ("reserve", 0, [("C", "w1", 1)], 1), ("reopen",),
    ]),
    "disk-day-jump": (True, [
        ("set", "A", "w2", 3), ("reserve", 7, [("A", "w2", 3)], 4), ("commit", 7),
        ("adjust", "A", "w2", 1, 3), ("pay", 1, 7, True), ("expire", 255), ("expire", 255),
        ("reopen",), ("reserve", 7, [("A", "w2", 1)], 1), ("adjust", "A", "w2", 1, 3),
        ("checkpoint",), ("reopen",),
    ]),
}

os.makedirs("fuzz/seeds/ops", exist_ok=True)
for name, (disk, ops) in SEEDS.items():
    with open(f"fuzz/seeds/ops/{name}", "wb") as f:
        f.write(enc(ops, disk))
print("wrote", len(SEEDS), "seeds")

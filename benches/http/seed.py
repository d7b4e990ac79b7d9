"""Sets on_hand of skus S1..S<n> in warehouse kol through the partner API (keep-alive)."""
import http.client
import json
import sys

port, token, n, on_hand = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(1, n + 1):
    conn.request("PUT", f"/v1/partner/stock/S{i}/kol", body=json.dumps({"on_hand": on_hand}),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"seeding S{i}: HTTP {r.status}")

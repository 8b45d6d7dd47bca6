"""One limit at every layer (issue 5, defect 3).

max_message_bytes bounds the built message at intake, the JOB frame on the
agent link and the store alike.  With a lowered limit (a 70 MiB message is
too slow under ASan), a message of exactly max_message_bytes is accepted,
travels to an agent whose own file says far less (the server's WELCOME
carries the limit), and is delivered byte for byte; one byte more is
refused at intake with 413.  The unit tests (test_link, test_agent) cover
the frame above the old fixed 65 MiB cap.
"""

import os

import shivneri_harness as h

LIMIT = 65536
LINE = "a" * 59 + "\n"


def delivered_size(c, mid, name):
    c.wait_delivered([mid])
    m = c.msg(mid)
    assert m["provider"] == name, m
    new = os.path.join(c.maildir(name), "new")
    for fname in os.listdir(new):
        path = os.path.join(new, fname)
        with open(path, "rb") as f:
            head = f.read(4096)
        if mid.encode() in head:
            return os.path.getsize(path)
    raise AssertionError("no file for %s in %s" % (mid, new))


def text_of(lines, tail):
    return LINE * lines + "a" * tail


def test_message_at_the_limit(make_cluster):
    c = make_cluster(providers=("a",),
                     server_extra={"max_message_bytes": LIMIT})
    c.start_server()
    # The agent's own file allows only 1024 bytes: the server's limit wins.
    own = c.write_agent_config("agent.ini")
    with open(own) as f:
        text = f.read()
    text = text.replace("max_message_bytes = %d" % LIMIT,
                        "max_message_bytes = 1024")
    assert "max_message_bytes = 1024" in text
    with open(own, "w") as f:
        f.write(text)
    c.start_agent("a", config=own)

    # Calibrate: the size of the built message is linear in whole lines.
    size1 = delivered_size(c, c.submit(h.message(1, text=text_of(0, 1))),
                           "a")
    size2 = delivered_size(c, c.submit(h.message(2, text=text_of(10, 1))),
                           "a")
    per_line = (size2 - size1) // 10
    assert per_line in (60, 61), (size1, size2)
    lines = (LIMIT - size1 - 200) // per_line
    tail = LIMIT - (size1 + lines * per_line) + 1
    assert 1 <= tail < 500, tail

    at_cap = h.message(3, text=text_of(lines, tail))
    mid = c.submit(at_cap)
    assert delivered_size(c, mid, "a") == LIMIT

    over = h.message(3, text=text_of(lines, tail + 1))
    r = c.post("/v1/messages", over)
    h.assert_error(r, 413, {"too_large"})
    # The link survived the big one: the agent is still up.
    assert c.provider("a")["state"] == "up"

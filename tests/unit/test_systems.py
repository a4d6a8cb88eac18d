from fusionlog.systems import format_regex


def test_format_regex_splits_hdfs_line():
    regex, headers = format_regex("<Date> <Time> <Pid> <Level> <Component>: <Content>")
    assert headers == ["Date", "Time", "Pid", "Level", "Component", "Content"]
    m = regex.match("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating")
    assert m.group("Component") == "dfs.DataNode$PacketResponder"
    assert m.group("Content") == "PacketResponder 1 for block blk_3 terminating"


def test_format_regex_literal_brackets():
    regex, _ = format_regex("<Logrecord> <Date> <Time> <Pid> <Level> <Component> [<ADDR>] <Content>")
    m = regex.match("f.log 2017-05-16 00:00:00.008 25746 INFO nova.x [req-1 - - -] GET /v2 status: 200")
    assert m.group("ADDR") == "req-1 - - -" and m.group("Content") == "GET /v2 status: 200"
    assert regex.match("no brackets here at all") is None


def test_a_long_line_that_does_not_match_fails_fast():
    """Lazy fields everywhere backtracked over every split of the words: 10 s for 1,000 characters (issue 17)."""
    import time

    regex, _ = format_regex("<Logrecord> <Date> <Time> <Pid> <Level> <Component> [<ADDR>] <Content>")
    line = ("- 1133638373 2005.12.03 R56-M0-NA-C:J15-U11 iar 0x0023f108, dear 0x1feaa260 (35591534) " * 120)[:10_000]
    t0 = time.perf_counter()
    assert regex.match(line) is None
    assert time.perf_counter() - t0 < 0.5

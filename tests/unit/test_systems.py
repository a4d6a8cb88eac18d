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

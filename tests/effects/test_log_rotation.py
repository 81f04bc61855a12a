"""A detached container's log, capped (nucleus.effects.logs): the writer the logger process runs
starts a new file before one would grow past the size cap and keeps at most the number of files
asked for; readers take the files oldest first and follow the current one across rotations. No
kernel feature is needed: plain files in a temporary directory, and a pipe."""

from __future__ import annotations

import os
import threading

import pytest

from nucleus.effects import logs


def sink(tmp_path, max_size: int, max_files: int, record: bool = True) -> logs.Sink:
    record_path = tmp_path / "c.json"
    if record:
        record_path.write_text("{}")
    return logs.Sink(str(tmp_path / "c.log"), max_size, max_files, str(record_path))


def contents(tmp_path) -> dict[str, bytes]:
    return {name: (tmp_path / name).read_bytes() for name in sorted(os.listdir(tmp_path))
            if name.startswith("c.log")}


def test_lines_go_whole_into_files_of_at_most_the_cap(tmp_path):
    writer = logs.Writer(sink(tmp_path, 20, 3))
    for i in range(10):
        writer.write(f"line {i}\n".encode())  # 7 bytes each: two fit in a file, not three
    writer.close()
    assert contents(tmp_path) == {"c.log": b"line 8\nline 9\n", "c.log.1": b"line 6\nline 7\n",
                                  "c.log.2": b"line 4\nline 5\n"}
    assert logs.files(str(tmp_path / "c.log")) == [str(tmp_path / n) for n in ("c.log.2", "c.log.1", "c.log")]
    assert logs.size(str(tmp_path / "c.log")) == 3 * 14


def test_a_chunk_of_many_lines_is_cut_at_line_ends(tmp_path):
    writer = logs.Writer(sink(tmp_path, 16, 2))
    writer.write(b"aaaa\nbbbb\ncccc\ndddd\neeee\n")
    writer.close()
    assert contents(tmp_path) == {"c.log": b"dddd\neeee\n", "c.log.1": b"aaaa\nbbbb\ncccc\n"}


def test_a_line_longer_than_a_file_is_split(tmp_path):
    writer = logs.Writer(sink(tmp_path, 8, 3))
    writer.write(b"x" * 20)
    writer.close()
    assert contents(tmp_path) == {"c.log": b"xxxx", "c.log.1": b"x" * 8, "c.log.2": b"x" * 8}


def test_one_file_is_emptied_when_full(tmp_path):
    writer = logs.Writer(sink(tmp_path, 10, 1))
    writer.write(b"12345\n")
    writer.write(b"67890\n")
    writer.close()
    assert contents(tmp_path) == {"c.log": b"67890\n"}


def test_an_existing_log_is_appended_to_with_its_size_counted(tmp_path):
    (tmp_path / "c.log").write_bytes(b"old line\n")
    writer = logs.Writer(sink(tmp_path, 12, 2))
    writer.write(b"new\n")
    writer.close()
    assert contents(tmp_path) == {"c.log": b"new\n", "c.log.1": b"old line\n"}


def test_no_new_file_once_the_record_is_gone(tmp_path):
    """A container removed while its logger drains the pipe: what is left is dropped rather
    than written to a file nothing would remove."""
    s = sink(tmp_path, 10, 2)
    writer = logs.Writer(s)
    writer.write(b"12345678\n")
    os.unlink(s.record)
    logs.remove(s.path)
    writer.write(b"more output\n" * 3)
    writer.close()
    assert contents(tmp_path) == {}


def test_the_logger_copies_a_pipe_until_every_writer_has_closed_it(tmp_path):
    r, w = os.pipe()
    s = sink(tmp_path, 1000, 3)
    copier = threading.Thread(target=logs.copy, args=(r, s))
    copier.start()
    for i in range(500):
        os.write(w, f"{i:04d}\n".encode())
    os.close(w)
    copier.join(timeout=10)
    os.close(r)
    assert not copier.is_alive()
    text = b"".join(contents(tmp_path)[n] for n in ("c.log.2", "c.log.1", "c.log"))
    assert text == b"".join(f"{i:04d}\n".encode() for i in range(500 - len(text) // 5, 500))
    assert all(len(data) <= 1000 for data in contents(tmp_path).values())
    assert logs.size(s.path) == len(text) <= 3000


def test_a_reader_takes_the_files_oldest_first_then_follows_across_rotations(tmp_path):
    s = sink(tmp_path, 10, 3)
    writer = logs.Writer(s)
    writer.write(b"a1\na2\na3\nb1\nb2\n")
    reader = logs.Reader(s.path)
    assert reader.snapshot() == b"a1\na2\na3\nb1\nb2\n"
    assert reader.more() == b""
    writer.write(b"b3\n")
    assert reader.more() == b"b3\n"
    writer.write(b"c1\nc2\nc3\nd1\n")  # two rotations: the file the reader holds is now c.log.2
    assert reader.more() == b"c1\nc2\nc3\nd1\n"
    writer.write(b"d2\n")
    assert reader.more() == b"d2\n"
    reader.close()
    writer.close()


def test_a_reader_follows_a_single_file_emptied_when_full(tmp_path):
    s = sink(tmp_path, 8, 1)
    writer = logs.Writer(s)
    writer.write(b"1234567\n")
    reader = logs.Reader(s.path)
    assert reader.snapshot() == b"1234567\n"
    writer.write(b"abc\n")
    assert reader.more() == b"abc\n"
    reader.close()
    writer.close()


def test_a_reader_of_a_log_not_yet_written(tmp_path):
    reader = logs.Reader(str(tmp_path / "c.log"))
    assert reader.snapshot() == b"" and reader.more() == b""
    (tmp_path / "c.log").write_bytes(b"late\n")
    assert reader.more() == b"late\n"
    reader.close()
    assert logs.size(str(tmp_path / "none.log")) is None


def test_follow_prints_what_was_pending_then_what_comes(tmp_path):
    s = sink(tmp_path, 10, 2)
    writer = logs.Writer(s)
    writer.write(b"one\ntw")
    reader = logs.Reader(s.path)
    data = reader.snapshot()
    end = data.rfind(b"\n") + 1
    out: list[str] = []
    rounds = iter([True, False])

    def running() -> bool:
        if out == ["tw"]:  # the pending part of a line was printed first
            writer.write(b"o\nthree\n\xc3")  # a character cut in two, completed below
            writer.write(b"\xa9\n")
        return next(rounds)

    logs.follow(reader, data[end:], running, out.append, interval=0)
    assert "".join(out) == "two\nthree\né\n"
    writer.close()


@pytest.mark.parametrize("max_size,max_files", [(0, 1), (10, 0)])
def test_a_writer_needs_room(tmp_path, max_size, max_files):
    with pytest.raises(ValueError):
        logs.Writer(sink(tmp_path, max_size, max_files))

"""Content fingerprints: cheap on large files, sensitive to content, blind to place."""

import numpy as np

from xmrlib.data import fingerprint as fp


def test_block_offsets_cover_head_tail_and_spread():
    offsets = fp.block_offsets(10**9)
    assert offsets[0] == 0 and offsets[-1] == 10**9 - fp.BLOCK and len(offsets) == fp.N_BLOCKS + 2
    gaps = np.diff(offsets)
    assert gaps.max() - gaps.min() <= 1                              # evenly spaced
    assert fp.block_offsets(100) == [0]


def test_large_file_reads_only_sampled_blocks(tmp_path, monkeypatch):
    """A sparse 1.5 GB file: the fingerprint reads (N_BLOCKS + 2) blocks, not the file."""
    big = tmp_path / "testall_ims.npy"
    with open(big, "wb") as f:
        f.truncate(1_474_560_128)                                    # 5000 x 36 x 2048 x 4 + header
    read = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, n):
            self.f.seek(n)

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

    monkeypatch.setattr(fp, "open", lambda p, m: Counting(real_open(p, m)), raising=False)
    first = fp.file_fingerprint(big)
    assert sum(read) == (fp.N_BLOCKS + 2) * fp.BLOCK                  # 4.2 MB of 1.5 GB
    with open(big, "r+b") as f:                                      # one sampled block changes
        f.seek(fp.block_offsets(big.stat().st_size)[5] + 7)
        f.write(b"\x01")
    assert fp.file_fingerprint(big) != first


def test_small_files_hashed_whole_and_name_size_matter(tmp_path):
    a = tmp_path / "a" / "train_caps.txt"
    b = tmp_path / "b" / "train_caps.txt"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("a dog\n" * 1000)
    assert fp.file_fingerprint(a) == fp.file_fingerprint(b)          # place does not matter
    b.write_text("a dog\n" * 500 + "a cat\n" + "a dog\n" * 499)      # one line in the middle
    assert fp.file_fingerprint(a) != fp.file_fingerprint(b)
    assert fp.split_fingerprint(tmp_path / "a", "train") != fp.split_fingerprint(tmp_path / "a",
                                                                                  "dev")

"""A CPU-bound batch: summarise 2,000 text files on every core, with a
progress bar. The same program in Swift is main.swift, beside this file.

    python3 batch_files.py [count]
"""
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time


def summarize(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    words, longest, checksum = 0, "", 14695981039346656037
    for word in text.split(" "):
        words += 1
        if len(word) > len(longest):
            longest = word
        for _ in range(4):
            for byte in word.encode():
                checksum = ((checksum ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return words, longest, checksum


def progress_bar(done, total, label="files"):
    if sys.stderr.isatty():
        filled = done * 30 // total
        sys.stderr.write(f"\r{label} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    directory = tempfile.mkdtemp(prefix="batch-files-")
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"]
    paths = []
    for index in range(count):
        words = ["".join(random.choice(syllables) for _ in range(random.randint(1, 5))) for _ in range(2000)]
        path = os.path.join(directory, f"file-{index}.txt")
        with open(path, "w", encoding="utf-8") as file:
            file.write(" ".join(words))
        paths.append(path)

    start = time.monotonic()
    summaries = []
    with multiprocessing.Pool() as pool:
        for summary in pool.imap(summarize, paths, chunksize=8):
            summaries.append(summary)
            progress_bar(len(summaries), count)
    shutil.rmtree(directory)
    longest = max((s[1] for s in summaries), key=len)
    print(f"{len(summaries)} files, {sum(s[0] for s in summaries)} words, longest word {longest}")
    print(f"in {time.monotonic() - start:.2f} s on {os.cpu_count()} cores")

"""`ismtool package` and `usp_prefer_static` through a real nginx: the static tree of a
presentation (DASH, HLS with MPEG-TS and with fMP4 segments, Smooth, HDS, I-frame playlists and
WebVTT subtitles) holds exactly what a player fetches, each file the origin's answer byte for
byte with the same Content-Type; with `usp_prefer_static` (and `origin_static_root` pointing at
the tree) a file on disk is sent as it is and a file missing from the tree is generated."""

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from helpers.hds import media_of
from helpers.media import FIXTURES, ISMTOOL, LADDER, MPD_NS

SOURCES = LADDER + ["subtitles-eng.mp4"]
# Players reach the fMP4 HLS tree from the master asked with `?hls_fmp4`; every URL below
# `hls/` carries that query.
FMP4_QUERY = "hls_fmp4"


def package(ism: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ISMTOOL), "package", str(ism), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=300)


def make_media(directory: Path) -> Path:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    for f in SOURCES:
        shutil.copy(FIXTURES / f, directory / f)
        (directory / f).chmod(0o644)
    ism = directory / "ladder.ism"
    subprocess.run([str(ISMTOOL), "create", "-o", str(ism), *[str(directory / f) for f in SOURCES]],
                   check=True, capture_output=True)
    ism.chmod(0o644)
    return ism


@pytest.fixture
def origin(make_nginx):
    """nginx with the media under /v/ (files preferred, from the tree), the same media under
    /gen/ (always generated) and under /alias/ (files preferred, no HDS); `origin.tree` is the
    packaged presentation's directory."""
    n = make_nginx(workers=2)
    ism = make_media(n.root / "v")
    static = n.prefix / "static"
    done = package(ism, static / "v")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout, done.stdout
    n.tree = static / "v" / "ladder.ism"
    n.summary = done.stdout
    return n.start(f"""
        location /v/ {{
            usp_handle_ism; usp_handle_f4f; usp_prefer_static on;
            origin_static_root {static};
        }}
        location /gen/ {{ alias {n.root}/v/; usp_handle_ism; usp_handle_f4f; }}
        location /alias/ {{
            alias {n.root}/v/; usp_handle_ism; usp_prefer_static on;
            origin_static_root {static}/v;
        }}""")


def url_of(tree: Path, file: Path) -> str:
    """The URL below /v/ … or /gen/ … that a file of the tree answers (path and query)."""
    relative = file.relative_to(tree.parent).as_posix()
    query = f"?{FMP4_QUERY}" if relative.startswith("ladder.ism/hls/") else ""
    return relative + query


def tree_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file())


def test_every_file_is_the_generated_answer(origin):
    files = tree_files(origin.tree)
    names = {f.relative_to(origin.tree).as_posix() for f in files}
    for expected in [".mpd", "dash/ladder-video=165000.dash", "dash/ladder-video=165000-0.dash",
                     "dash/ladder-textstream_eng=2000-0.dash",
                     ".m3u8", "ladder-video=165000.m3u8", "ladder-video=165000-1.ts",
                     "ladder-audio_eng=128000-1.ts", "keyframes/ladder-video=165000.m3u8",
                     "ladder-textstream_eng=2000-1.vtt",
                     "hls/ladder-video=165000.m3u8", "hls/ladder-video=165000.m4s",
                     "hls/ladder-video=165000-1.m4s", "hls/ladder-textstream_eng=2000-1.vtt",
                     "Manifest", "QualityLevels(165000)/Fragments(video=0)",
                     "QualityLevels(128000)/Fragments(audio_eng=0)",
                     ".f4m", "ladder-audio_eng=128000-video=165000Seg1-Frag1"]:
        assert expected in names, expected
    assert not [n for n in names if n.endswith(".ismtool-part")]
    total = 0
    for f in files:
        url = url_of(origin.tree, f)
        static, generated = origin.get(f"/v/{url}"), origin.get(f"/gen/{url}")
        assert static.status_code == 200 and generated.status_code == 200, url
        body = f.read_bytes()
        assert static.content == body, url
        assert generated.content == body, url
        assert static.headers["Content-Type"] == generated.headers["Content-Type"], url
        total += len(body)
    assert len(files) > 80 and total > 1 << 20
    assert f"wrote {len(files)} files" in origin.summary


def crawl_hls(origin, master: str) -> set[str]:
    """Every URL (path and query) an HLS player reaches from `master` on the generating
    location, without /gen/."""
    seen, todo = set(), [master]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        if not urlsplit(url).path.endswith(".m3u8"):
            continue
        r = origin.get(url)
        assert r.status_code == 200, url
        for line in r.text.splitlines():
            refs = [line] if line and not line.startswith("#") else []
            if 'URI="' in line:
                refs.append(line.split('URI="', 1)[1].split('"', 1)[0])
            todo += [urljoin(url, ref) for ref in refs]
    return {u.removeprefix("/gen/") for u in seen}


def test_the_tree_is_what_players_fetch(origin):
    names = {url_of(origin.tree, f) for f in tree_files(origin.tree)}
    # HLS, both masters: every URL is a file, except the fMP4 master and I-frame playlists,
    # whose paths the MPEG-TS ones have (the origin generates them).
    hls = crawl_hls(origin, "/gen/ladder.ism/.m3u8") | crawl_hls(origin, "/gen/ladder.ism/.m3u8?hls_fmp4")
    left = {u for u in hls if u.endswith(".m3u8?hls_fmp4") and "/hls/" not in u}
    assert left and all(u == "ladder.ism/.m3u8?hls_fmp4" or "/keyframes/" in u for u in left)
    for u in left:
        assert u in origin.summary
    assert hls - left <= names, sorted(hls - left - names)
    # DASH: an init segment and one file per timeline entry for each representation.
    mpd = ET.fromstring((origin.tree / ".mpd").read_bytes())
    dash = set()
    for aset in mpd.iter(f"{{{MPD_NS['d']}}}AdaptationSet"):
        template = aset.find("d:SegmentTemplate", MPD_NS)
        times, t = [], 0
        for s in template.find("d:SegmentTimeline", MPD_NS):
            t = int(s.get("t", t))
            for _ in range(int(s.get("r", 0)) + 1):
                times.append(t)
                t += int(s.get("d"))
        for rep in aset.findall("d:Representation", MPD_NS):
            rid = rep.get("id")
            dash.add(f"ladder.ism/dash/{template.get('initialization').replace('$RepresentationID$', rid)}")
            for t in times:
                media = template.get("media").replace("$RepresentationID$", rid)
                dash.add(f"ladder.ism/dash/{media.replace('$Time$', str(t))}")
    assert dash == {n for n in names if n.startswith("ladder.ism/dash/")}
    # Smooth: each quality level's chunks.
    smooth = ET.fromstring((origin.tree / "Manifest").read_bytes())
    fragments = set()
    for stream in smooth.iter("StreamIndex"):
        times, t = [], 0
        for c in stream.iter("c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", 1))):
                times.append(t)
                t += int(c.get("d"))
        for level in stream.iter("QualityLevel"):
            for t in times:
                path = stream.get("Url").replace("{bitrate}", level.get("Bitrate"))
                fragments.add("ladder.ism/" + path.replace("{start time}", str(t)))
    assert fragments == {n for n in names if "/QualityLevels(" in n}
    # HDS: every fragment each bootstrap numbers.
    hds = {f"ladder.ism/{url}Seg1-Frag{k}"
           for url, numbers in media_of((origin.tree / ".f4m").read_bytes()) for k in numbers}
    assert hds == {n for n in names if "Seg1-Frag" in n}


def test_a_file_on_disk_is_sent_as_it_is(origin):
    mpd = origin.tree / ".mpd"
    mpd.write_bytes(mpd.read_bytes() + b"<!-- from the tree -->\n")
    r = origin.get("/v/ladder.ism/.mpd")
    assert r.status_code == 200 and r.content.endswith(b"<!-- from the tree -->\n")
    assert r.headers["Content-Type"] == "application/dash+xml"
    assert b"from the tree" not in origin.get("/gen/ladder.ism/.mpd").content

    # `origin_static_root` stands in for an alias as it does for a root.
    assert origin.get("/alias/ladder.ism/.mpd").content == r.content
    # With usp_handle_f4f off, HDS is off, files or not.
    assert (origin.tree / ".f4m").exists()
    assert origin.get("/alias/ladder.ism/.f4m").status_code == 404

    segment = origin.tree / "QualityLevels(128000)" / "Fragments(audio_eng=0)"
    segment.write_bytes(b"not the generated fragment")
    r = origin.get("/v/ladder.ism/QualityLevels(128000)/Fragments(audio_eng=0)")
    assert r.content == b"not the generated fragment"
    assert r.headers["Content-Type"] == "audio/mp4"
    # Ranges work on the file as on any static file.
    r = origin.get("/v/ladder.ism/QualityLevels(128000)/Fragments(audio_eng=0)",
                   headers={"Range": "bytes=4-6"})
    assert r.status_code == 206 and r.content == b"the"

    # The fMP4 master shares its path with the MPEG-TS one: asked for by query, it is made.
    master = origin.tree / ".m3u8"
    master.write_bytes(master.read_bytes() + b"# from the tree\n")
    assert origin.get("/v/ladder.ism/.m3u8").text.endswith("# from the tree\n")
    fmp4 = origin.get("/v/ladder.ism/.m3u8?hls_fmp4")
    assert fmp4.status_code == 200 and "# from the tree" not in fmp4.text
    assert fmp4.content == origin.get("/gen/ladder.ism/.m3u8?hls_fmp4").content
    assert "\nhls/ladder-video=165000.m3u8?hls_fmp4\n" in fmp4.text


def test_a_file_missing_from_the_tree_is_generated(origin):
    for url in ["ladder.ism/ladder-video=165000-1.ts",
                "ladder.ism/QualityLevels(165000)/Fragments(video=0)",
                "ladder.ism/hls/ladder-video=273000-2.m4s?hls_fmp4",
                "ladder.ism/ladder-audio_eng=128000-video=432000Seg1-Frag2",
                "ladder.ism/.mpd"]:
        file = origin.tree.parent / url.split("?")[0]
        packaged = file.read_bytes()
        file.unlink()
        r = origin.get(f"/v/{url}")
        assert r.status_code == 200, url
        assert r.content == packaged == origin.get(f"/gen/{url}").content, url
    # A URL no presentation has is still a 404, tree or not.
    assert origin.get("/v/ladder.ism/dash/ladder-video=165000-99999999.dash").status_code == 404


def test_formats_choose_what_is_written(tmp_path):
    ism = make_media(tmp_path / "media")
    done = package(ism, tmp_path / "dash", "--formats", "dash")
    assert done.returncode == 0, done.stderr
    names = {f.relative_to(tmp_path / "dash" / "ladder.ism").as_posix()
             for f in tree_files(tmp_path / "dash")}
    assert ".mpd" in names and all(n == ".mpd" or n.startswith("dash/") for n in names)
    assert len(names) == 1 + 5 * 3 + 2  # the MPD; video and audio: init + 2 segments; text: 1 + 1

    done = package(ism, tmp_path / "two", "--formats", "smooth,hls-fmp4")
    assert done.returncode == 0, done.stderr
    names = {f.relative_to(tmp_path / "two" / "ladder.ism").as_posix()
             for f in tree_files(tmp_path / "two")}
    assert "Manifest" in names and "hls/ladder-video=165000-1.m4s" in names
    # The fMP4 master is never written (the origin makes it whatever the tree holds).
    assert ".m3u8" not in names and not [n for n in names if n.startswith("dash/") or n.endswith(".ts")]

    done = package(ism, tmp_path / "bad", "--formats", "dash,flash")
    assert done.returncode != 0 and "flash" in done.stderr


def test_package_refuses_what_it_cannot_write(tmp_path):
    missing = package(tmp_path / "nothing.ism", tmp_path / "out")
    assert missing.returncode == 1
    assert "nothing.ism" in missing.stderr and "No such file" in missing.stderr

    live = tmp_path / "channel.isml"
    subprocess.run([str(ISMTOOL), "create", "-o", str(live), "--archiving=1"],
                   check=True, capture_output=True)
    refused = package(live, tmp_path / "out")
    assert refused.returncode == 1 and "live" in refused.stderr, refused.stderr
    assert not (tmp_path / "out" / "channel.isml").exists()

    # Into the server manifest's own folder, the tree's directory would be the manifest.
    ism = make_media(tmp_path / "media")
    beside = package(ism, tmp_path / "media")
    assert beside.returncode == 1 and "not a directory" in beside.stderr, beside.stderr
    assert ism.read_bytes().startswith(b"<?xml")


def test_static_root_is_an_absolute_path(make_nginx):
    n = make_nginx()
    conf = n.config("location /v/ {\n usp_handle_ism; usp_prefer_static on;\n"
                    " origin_static_root static;\n}")
    r = n.test_config(conf)
    assert r.returncode != 0
    assert 'invalid value "static" in "origin_static_root" directive, expected an absolute path' \
        in r.stderr, r.stderr
    conf = n.config("location /v/ {\n usp_handle_ism;\n"
                    " origin_static_root /srv/b;\n origin_static_root /srv/c;\n}")
    r = n.test_config(conf)
    assert r.returncode != 0 and '"origin_static_root" directive is duplicate' in r.stderr, r.stderr
    conf = n.config("location /v/ {\n usp_handle_ism; usp_prefer_static on;\n"
                    " origin_static_root /srv/a/;\n location /v/x/ { usp_handle_ism; }\n}")
    assert n.test_config(conf).returncode == 0

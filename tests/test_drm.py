"""Content protection through a real nginx: CENC (AES-CTR) and cbcs DASH whose init segments and
fragments ffmpeg decrypts with the key to the source's exact frames (and not with a wrong key),
Smooth fragments with PIFF sample encryption, HLS AES-128 (TS and fMP4) that ffmpeg fetches the
key for and decodes frame-exact, SAMPLE-AES (cbcs) fMP4, the signalling each manifest carries,
per-request keys from nginx variables, formats switched off, and bad key material answered with
a clear error and no crash. ClearKey playback in headless Chromium (dash.js, shaka) and hls.js
with AES-128 are in test_players.py."""

import base64
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
import requests

from helpers.drm import KEY, KEY2, KID, KID2, WRONG
from helpers.live import cmaf_pieces, live_dir, timeline
from helpers.media import FIXTURES, ISMTOOL, LADDER, MPD_NS, boxes, frame_hashes, media_dir

SOURCES = {"video": "ladder-video-360.ismv", "audio": "ladder-audio-eng.isma"}
CENC_NS = "{urn:mpeg:cenc:2013}"


def protected(media, name: str, *options: str):
    """`<media>/<name>` over the 360p video and English audio, with ismtool create options."""
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / name),
                    *[str(media / f) for f in SOURCES.values()], *options],
                   check=True, capture_output=True)
    (media / name).chmod(0o644)


@pytest.fixture
def origin(make_nginx):
    n = make_nginx()
    media = media_dir(n, LADDER, {"clear.ism": LADDER})
    protected(media, "cenc.ism", f"--iss.key={KID}:{KEY}", f"--widevine.key={KID}:{KEY}")
    protected(media, "cbcs.ism", f"--iss.key={KID}:{KEY}", "--iss.scheme=cbcs")
    protected(media, "split.ism", f"--iss.video_key={KID}:{KEY}", f"--iss.audio_key={KID2}:{KEY2}")
    protected(media, "aes.ism", f"--hls.key=:{KEY}", "--hls.license_server_url=/keys/k.key",
              "--mpd_playout=false", "--iss_playout=false")
    protected(media, "sample-aes.ism", f"--hls.key={KID}:{KEY}", "--hls_playout=sample_aes",
              "--hls.license_server_url=skd://ladder", "--hls_fmp4")
    protected(media, "mixed.ism", f"--iss.key={KID}:{KEY}", "--hls_playout=clear")
    keys = n.root / "keys"
    keys.mkdir(mode=0o755)
    (keys / "k.key").write_bytes(bytes.fromhex(KEY))
    (keys / "wrong.key").write_bytes(bytes.fromhex(WRONG))
    for f in keys.iterdir():
        f.chmod(0o644)
    return n.start(rf"""
        origin_drm clearkey.license_server_url http://$http_host/license;
        location ~ \.(ism|isml|mp4)(/|$) {{
            usp_handle_ism;
            usp_handle_f4f;
        }}
        location ^~ /v/mixed.ism/ {{
            usp_handle_ism;
            usp_handle_f4f;
            origin_drm iss.key $tenant_key;
        }}
        location ^~ /wrongkey/ {{
            alias html/v/;
            usp_handle_ism;
            origin_drm hls.license_server_url /keys/wrong.key;
        }}
        location /keys/ {{ root html; }}""",
                   http_extra=f'map $arg_tenant $tenant_key {{ default ""; b {KID2}:{KEY2}; }}')


def fetch_representation(origin, manifest: str, rep_id: str, tmp_path, query=""):
    """The init segment and every media segment of one DASH representation, concatenated into
    a file (the whole of what a player downloads for it)."""
    mpd = ET.fromstring(origin.get(f"/v/{manifest}/.mpd{query}").content)
    out = tmp_path / f"{manifest}-{rep_id}.mp4"
    for aset in mpd.iter(MPD_NS["d"].join("{}") + "AdaptationSet"):
        reps = [r.get("id") for r in aset.findall("d:Representation", MPD_NS)]
        if rep_id not in reps:
            continue
        tmpl = aset.find("d:SegmentTemplate", MPD_NS)
        data = bytearray()
        init = tmpl.get("initialization").replace("$RepresentationID$", rep_id)
        # The template repeats the MPD's query on every URL.
        r = origin.get(f"/v/{manifest}/dash/{init}")
        assert r.status_code == 200, r.text
        data += r.content
        t = 0
        for s in tmpl.find("d:SegmentTimeline", MPD_NS):
            t = int(s.get("t", t))
            for _ in range(int(s.get("r", 0)) + 1):
                seg = tmpl.get("media").replace("$RepresentationID$", rep_id) \
                    .replace("$Time$", str(t))
                r = origin.get(f"/v/{manifest}/dash/{seg}")
                assert r.status_code == 200, (seg, r.text)
                data += r.content
                t += int(s.get("d"))
        out.write_bytes(bytes(data))
        return out
    raise AssertionError(f"{rep_id} not in the MPD")


def decoded(path, stream: str, key: str | None):
    """Frame hashes ffmpeg decodes, or None when it cannot decode at all. The file is piped in,
    so ffmpeg reads it fragment by fragment as a player does: given a seekable file, ffmpeg 5.1
    reads every moof first and then decrypts each sample with the last fragment's encryption
    information."""
    cmd = ["ffmpeg", "-v", "error"]
    if key:
        cmd += ["-decryption_key", key]
    cmd += ["-i", "-", "-map", stream, "-f", "framemd5", "-"]
    out = subprocess.run(cmd, stdin=open(path, "rb"), capture_output=True, timeout=120)
    out.stdout = out.stdout.decode()
    if out.returncode != 0:
        return None
    return [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")]


def child_boxes(data: bytes, path: list[bytes]):
    """The bodies of the boxes at `path` below `data` (a box list)."""
    found = [data]
    for name in path:
        found = [body for parent in found for kind, body in boxes(parent) if kind == name]
    return found


def sample_entry(init: bytes):
    (stsd,) = child_boxes(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    (entry,) = boxes(stsd[8:])
    return entry


@pytest.mark.parametrize("manifest,scheme", [("cenc.ism", b"cenc"), ("cbcs.ism", b"cbcs")])
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_dash_decrypts_frame_exact_and_only_with_the_key(origin, tmp_path, manifest, scheme,
                                                         kind):
    rep = "video=165000" if kind == "video" else "audio_eng=128000"
    stream = "0:v" if kind == "video" else "0:a"
    path = fetch_representation(origin, manifest, rep, tmp_path)
    want = frame_hashes(str(FIXTURES / SOURCES[kind]), stream)
    assert decoded(path, stream, KEY) == want
    # The content really is encrypted: a wrong key, or none, does not give the frames.
    assert decoded(path, stream, WRONG) != want
    assert decoded(path, stream, None) != want
    init = path.read_bytes()
    fourcc, body = sample_entry(init)
    assert fourcc == (b"encv" if kind == "video" else b"enca")
    assert scheme in body and bytes.fromhex(KID) in body  # schm and tenc
    # pssh for W3C common (ClearKey), PlayReady and Widevine.
    systems = {body[4:20].hex() for body in child_boxes(init, [b"moov", b"pssh"])}
    want_systems = {"1077efecc0b24d02ace33c1e52e2fb4b", "9a04f07998404286ab92e65be0885f95"}
    if manifest == "cenc.ism":
        want_systems.add("edef8ba979d64acea3c827dcd51d21ed")
    assert systems == want_systems


def test_dash_through_ffmpegs_dash_demuxer(origin):
    """The MPD as ffmpeg's DASH client reads it, key given: frame-exact."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-cenc_decryption_key", KEY,
                          "-i", origin.url("/v/cenc.ism/.mpd"), "-map", "0:v:0",
                          "-f", "framemd5", "-"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
           if line and not line.startswith("#")]
    assert got == frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")


def test_every_fragment_has_sample_encryption_boxes(origin):
    mpd = origin.get("/v/cenc.ism/.mpd").text
    t = re.search(r'<S t="(\d+)"', mpd).group(1)
    seg = origin.get(f"/v/cenc.ism/dash/cenc-video=165000-{t}.dash")
    assert seg.status_code == 200
    (traf,) = child_boxes(seg.content, [b"moof", b"traf"])
    kinds = [k for k, _ in boxes(traf)]
    assert kinds[-3:] == [b"senc", b"saiz", b"saio"], kinds
    # The ETag is stable, and a conditional request is answered 304.
    again = origin.get(f"/v/cenc.ism/dash/cenc-video=165000-{t}.dash")
    assert again.content == seg.content and again.headers["ETag"] == seg.headers["ETag"]
    assert origin.get(f"/v/cenc.ism/dash/cenc-video=165000-{t}.dash",
                      headers={"If-None-Match": seg.headers["ETag"]}).status_code == 304
    clear = origin.get(f"/v/clear.ism/.mpd").text
    assert "ContentProtection" not in clear


def test_dash_signalling(origin):
    r = origin.get("/v/cenc.ism/.mpd")
    assert r.status_code == 200
    mpd = ET.fromstring(r.content)
    kid_uuid = f"{KID[:8]}-{KID[8:12]}-{KID[12:16]}-{KID[16:20]}-{KID[20:]}"
    for aset in mpd.iter("{urn:mpeg:dash:schema:mpd:2011}AdaptationSet"):
        cps = aset.findall("d:ContentProtection", MPD_NS)
        schemes = [c.get("schemeIdUri") for c in cps]
        assert schemes == ["urn:mpeg:dash:mp4protection:2011",
                           "urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95",
                           "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
                           "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"]
        assert cps[0].get("value") == "cenc"
        assert cps[0].get(CENC_NS + "default_KID") == kid_uuid
        pro = base64.b64decode(cps[1].find("{urn:microsoft:playready}pro").text)
        assert int.from_bytes(pro[:4], "little") == len(pro)
        header = pro[10:].decode("utf-16-le")
        assert "<ALGID>AESCTR</ALGID>" in header
        guid = bytes.fromhex(KID)
        guid = guid[3::-1] + guid[5:3:-1] + guid[7:5:-1] + guid[8:]
        assert f"<KID>{base64.b64encode(guid).decode()}</KID>" in header
        pssh = base64.b64decode(cps[2].find(CENC_NS + "pssh").text)
        assert pssh[4:8] == b"pssh" and bytes.fromhex(KID) in pssh
        # The ClearKey license URL, from a variable, set for the whole server.
        assert cps[3].find("{https://dashif.org/CPS}Laurl").text == origin.url("/license")
    # The key itself appears nowhere.
    for url in ["/v/cenc.ism/.mpd", "/v/cenc.ism/Manifest", "/v/aes.ism/.m3u8",
                "/v/sample-aes.ism/.m3u8"]:
        text = origin.get(url).text.lower()
        assert KEY not in text and base64.b64encode(bytes.fromhex(KEY)).decode().lower() not in text
    cbcs = ET.fromstring(origin.get("/v/cbcs.ism/.mpd").content)
    cp = cbcs.find(".//d:ContentProtection", MPD_NS)
    assert cp.get("value") == "cbcs"


def test_per_track_keys(origin, tmp_path):
    mpd = origin.get("/v/split.ism/.mpd").text
    kids = re.findall(r'cenc:default_KID="([0-9a-f-]+)"', mpd)
    assert [k.replace("-", "") for k in kids] == [KID, KID2]
    video = fetch_representation(origin, "split.ism", "video=165000", tmp_path)
    audio = fetch_representation(origin, "split.ism", "audio_eng=128000", tmp_path)
    assert decoded(video, "0:v", KEY) == frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")
    assert decoded(audio, "0:a", KEY2) == frame_hashes(str(FIXTURES / SOURCES["audio"]), "0:a")
    assert decoded(audio, "0:a", KEY) != frame_hashes(str(FIXTURES / SOURCES["audio"]), "0:a")


def test_key_from_an_nginx_variable(origin, tmp_path):
    """`origin_drm iss.key $tenant_key`: the key a map gives this request, over the .ism's."""
    mpd = origin.get("/v/mixed.ism/.mpd?tenant=b").text
    assert KID2[:8] in mpd and KID[:8] not in mpd
    path = fetch_representation(origin, "mixed.ism", "video=165000", tmp_path, "?tenant=b")
    want = frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")
    assert decoded(path, "0:v", KEY2) == want
    assert decoded(path, "0:v", KEY) != want
    # Without the argument the variable is empty and the .ism's key applies.
    assert KID[:8] in origin.get("/v/mixed.ism/.mpd").text


def test_smooth_fragments_carry_piff_sample_encryption(origin):
    manifest = origin.get("/v/cenc.ism/Manifest")
    assert manifest.status_code == 200
    root = ET.fromstring(manifest.content)
    header = root.find("Protection/ProtectionHeader")
    assert header.get("SystemID") == "9A04F079-9840-4286-AB92-E65BE0885F95"
    pro = base64.b64decode(header.text)
    assert "AESCTR" in pro[10:].decode("utf-16-le")
    video = root.find("StreamIndex[@Type='video']")
    t = int(video.find("c").get("t", 0))
    frag = origin.get(f"/v/cenc.ism/QualityLevels(165000)/Fragments(video={t})")
    assert frag.status_code == 200
    clear = origin.get(f"/v/clear.ism/QualityLevels(165000)/Fragments(video={t})")
    (traf,) = child_boxes(frag.content, [b"moof", b"traf"])
    piff = [body for kind, body in boxes(traf) if kind == b"uuid"
            and body[:16].hex() == "a2394f525a9b4f14a2446c427c648df4"]
    assert len(piff) == 1
    flags = int.from_bytes(piff[0][16:20], "big") & 0xffffff
    count = int.from_bytes(piff[0][20:24], "big")
    assert flags == 2 and count > 0
    (mdat,) = child_boxes(frag.content, [b"mdat"])
    (clear_mdat,) = child_boxes(clear.content, [b"mdat"])
    # Same length (CTR), different bytes, and the NAL length prefixes are left clear.
    assert len(mdat) == len(clear_mdat) and mdat != clear_mdat
    assert mdat[:4] == clear_mdat[:4]


def test_hls_aes128_ts_decodes_with_the_served_key(origin):
    playlist = origin.get("/v/aes.ism/aes-video=165000.m3u8").text
    assert '#EXT-X-KEY:METHOD=AES-128,URI="/keys/k.key"' in playlist
    master = origin.get("/v/aes.ism/.m3u8").text
    assert '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="/keys/k.key"' in master
    assert "I-FRAME" not in master
    seg = origin.get("/v/aes.ism/aes-video=165000-1.ts")
    assert seg.status_code == 200 and len(seg.content) % 16 == 0 and seg.content[0] != 0x47
    clear = origin.get("/v/clear.ism/clear-video=165000-1.ts").content
    assert len(seg.content) == (len(clear) // 16 + 1) * 16
    want = frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")
    assert frame_hashes(origin.url("/v/aes.ism/aes-video=165000.m3u8"), "0:v") == want
    audio = origin.url("/v/aes.ism/aes-audio_eng=128000.m3u8")
    assert frame_hashes(audio, "0:a") == frame_hashes(str(FIXTURES / SOURCES["audio"]), "0:a")
    # Packed audio too: segment n is AES-128-CBC with IV n, as ffmpeg's crypto protocol reads it.
    clear_aac = frame_hashes(origin.url("/v/clear.ism/clear-audio_eng=128000-1.aac"), "0:a")
    out = subprocess.run(["ffmpeg", "-v", "error", "-key", KEY, "-iv", f"{1:032x}", "-i",
                          "crypto:" + origin.url("/v/aes.ism/aes-audio_eng=128000-1.aac"),
                          "-map", "0:a", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
            if line and not line.startswith("#")] == clear_aac
    # A ranged request of the encrypted segment is the same bytes.
    part = origin.get("/v/aes.ism/aes-video=165000-1.ts", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == seg.content[100:300]
    # With the wrong key behind the URI, ffmpeg gets no frames of the source.
    out = subprocess.run(["ffmpeg", "-v", "error", "-i",
                          origin.url("/wrongkey/aes.ism/aes-video=165000.m3u8"),
                          "-map", "0:v", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=120)
    got = [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines()
           if line and not line.startswith("#")]
    assert got != want
    # The other formats are switched off by their playout.
    for url in ["/v/aes.ism/.mpd", "/v/aes.ism/Manifest"]:
        r = origin.get(url)
        assert r.status_code == 403 and r.headers["X-Origin-Error"] == "FORMAT_DISABLED"


def test_hls_aes128_fmp4(origin):
    playlist = origin.get("/v/aes.ism/hls/aes-video=165000.m3u8").text
    assert playlist.index("#EXT-X-MAP") < playlist.index("#EXT-X-KEY:METHOD=AES-128")
    init = origin.get("/v/aes.ism/hls/aes-video=165000.m4s").content
    assert init[4:8] == b"ftyp"  # the init segment stays clear
    want = frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")
    assert frame_hashes(origin.url("/v/aes.ism/hls/aes-video=165000.m3u8"), "0:v") == want


def test_hls_sample_aes_fmp4_is_cbcs(origin, tmp_path):
    playlist = origin.get("/v/sample-aes.ism/hls/sample-aes-video=165000.m3u8").text
    assert '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://ladder",KEYFORMAT="identity"' in playlist
    data = bytearray(origin.get("/v/sample-aes.ism/hls/sample-aes-video=165000.m4s").content)
    fourcc, body = sample_entry(bytes(data))
    assert fourcc == b"encv" and b"cbcs" in body
    for line in playlist.splitlines():
        if line.endswith(".m4s") and not line.startswith("#"):
            r = origin.get(f"/v/sample-aes.ism/hls/{line}")
            assert r.status_code == 200
            data += r.content
    path = tmp_path / "sample-aes.mp4"
    path.write_bytes(bytes(data))
    want = frame_hashes(str(FIXTURES / SOURCES["video"]), "0:v")
    assert decoded(path, "0:v", KEY) == want
    assert decoded(path, "0:v", WRONG) != want
    # SAMPLE-AES is for fMP4: MPEG-TS segments are refused clearly.
    r = origin.get("/v/sample-aes.ism/sample-aes-video=165000-1.ts")
    assert r.status_code == 501 and "set hls_fmp4" in origin.log_text()


def test_playout_clear_and_refused_formats(origin):
    # DASH protected, HLS served clear as the .ism says, HDS refused (no protection for it).
    assert "ContentProtection" in origin.get("/v/mixed.ism/.mpd").text
    hls = origin.get("/v/mixed.ism/.m3u8")
    assert hls.status_code == 200 and "EXT-X-KEY" not in hls.text
    hds = origin.get("/v/mixed.ism/.f4m")
    assert hds.status_code == 403 and hds.headers["X-Origin-Error"] == "FORMAT_DISABLED"
    # DASH only: HLS is refused rather than served clear.
    r = origin.get("/v/cenc.ism/.m3u8")
    assert r.status_code == 403 and "HLS is not served" in origin.log_text()


def test_bad_key_material_fails_clearly(origin):
    media = origin.root / "v"
    good = (media / "cenc.ism").read_text()
    assert KEY.upper() in good.upper()
    for bad in ["nothex", KEY[:30], "0" * 32]:
        text = re.sub(r'(<meta name="key" content=")[^"]*"', rf'\g<1>{KID}:{bad}"', good, count=1)
        (media / "bad.ism").write_text(text)
        (media / "bad.ism").chmod(0o644)
        for url in ["/v/bad.ism/.mpd", "/v/bad.ism/dash/bad-video=165000.dash"]:
            r = origin.get(url)
            assert r.status_code == 500, (bad, url, r.status_code)
            assert r.headers["X-Origin-Error"] == "BAD_DRM_CONFIG"
            assert bad not in r.text
    log = origin.log_text()
    assert "content protection option iss.key" in log
    assert "nothex" not in log and KEY not in log.lower()
    # The worker lives on.
    assert origin.get("/v/cenc.ism/.mpd").status_code == 200
    assert origin.crashes() == []
    # ismtool refuses the same material up front.
    out = subprocess.run([str(ISMTOOL), "create", "-o", str(media / "x.ism"),
                          str(media / SOURCES["video"]), f"--iss.key={KID}:nothex"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "iss.key" in out.stderr and "nothex" not in out.stderr


def test_origin_drm_names_are_checked(make_nginx):
    n = make_nginx()
    out = n.test_config(n.config(r"location / { usp_handle_ism; origin_drm iss.secret x; }"))
    assert out.returncode != 0 and 'unknown option "iss.secret"' in out.stderr


def test_live_channel_encrypted_on_request(make_nginx, tmp_path):
    """An encoder pushes clear CMAF; the live DASH of the channel is CENC, its fragments
    decrypting to the very frames of the clear ones, with their live caching headers."""
    n = make_nginx()
    live_dir(n)
    n.start(rf"""
        location /live/ {{ usp_handle_ism; origin_live_auto_create on; client_max_body_size 0;
                           origin_drm iss.key {KID}:{KEY}; }}
        location /clear/ {{ alias html/live/; usp_handle_ism; }}""")
    init, fragments = cmaf_pieces()
    url = n.url("/live/enc.isml/Streams(video.cmfv)")
    assert requests.post(url, data=init).status_code == 200
    for f in fragments[:3]:
        assert requests.post(url, data=f).status_code == 200
    mpd = n.get("/live/enc.isml/.mpd")
    assert mpd.status_code == 200 and "cenc:default_KID" in mpd.text
    tmpl = re.search(r'media="([^"]+)"', mpd.text).group(1)
    rep = re.search(r'Representation id="([^"]+)"', mpd.text).group(1)
    init_url = re.search(r'initialization="([^"]+)"', mpd.text).group(1).replace(
        "$RepresentationID$", rep)
    encrypted, clear = bytearray(), bytearray()
    for base, out in (("/live/", encrypted), ("/clear/", clear)):
        out += n.get(f"{base}enc.isml/dash/{init_url}").content
        for t, _ in timeline(mpd.text):
            seg = n.get(f"{base}enc.isml/dash/" + tmpl.replace("$RepresentationID$", rep)
                        .replace("$Time$", str(t)))
            assert seg.status_code == 200
            if base == "/live/":
                assert "max-age" in seg.headers.get("Cache-Control", "")
            out += seg.content
    (tmp_path / "enc.mp4").write_bytes(bytes(encrypted))
    (tmp_path / "clear.mp4").write_bytes(bytes(clear))
    want = decoded(tmp_path / "clear.mp4", "0:v", None)
    assert want and decoded(tmp_path / "enc.mp4", "0:v", KEY) == want
    assert decoded(tmp_path / "enc.mp4", "0:v", WRONG) != want


def test_remote_sources_encrypted_on_request(make_nginx, tmp_path):
    """The same protection when the media and the .ism come from another HTTP server."""
    backend = make_nginx()
    media = media_dir(backend, list(SOURCES.values()), {})
    protected(media, "cenc.ism", f"--iss.key={KID}:{KEY}")
    backend.start("")
    origin = make_nginx()
    origin.start(f"""
        location /v/ {{ usp_handle_ism; ism_proxy_pass http://127.0.0.1:{backend.port}/v/; }}""")
    for rep, stream, kind in (("video=165000", "0:v", "video"), ("audio_eng=128000", "0:a", "audio")):
        path = fetch_representation(origin, "cenc.ism", rep, tmp_path)
        want = frame_hashes(str(FIXTURES / SOURCES[kind]), stream)
        assert decoded(path, stream, KEY) == want
        assert decoded(path, stream, WRONG) != want


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_hevc_decrypts_frame_exact(make_nginx, tmp_path, scheme):
    """HEVC slices: slice segment headers read and left clear, the data protected."""
    n = make_nginx()
    media = media_dir(n, ["hevc.mp4"], {})
    subprocess.run([str(ISMTOOL), "create", "-o", str(media / "hevc.ism"), str(media / "hevc.mp4"),
                    f"--iss.key={KID}:{KEY}", f"--iss.scheme={scheme}"],
                   check=True, capture_output=True)
    (media / "hevc.ism").chmod(0o644)
    n.start(r"location ~ \.(ism|isml|mp4)(/|$) { usp_handle_ism; }")
    rep = re.search(r'Representation id="(video[^"]*)"', n.get("/v/hevc.ism/.mpd").text).group(1)
    path = fetch_representation(n, "hevc.ism", rep, tmp_path)
    want = frame_hashes(str(FIXTURES / "hevc.mp4"), "0:v")
    assert decoded(path, "0:v", KEY) == want
    assert decoded(path, "0:v", WRONG) != want

"""EPUB (2 and 3) → a Document: the spine's text in reading order, chapters from the navigation, DRM refused.

Design choices:
- zipfile + lxml, no EPUB library: an EPUB is a zip (OCF) holding META-INF/container.xml → the package document
  (OPF: metadata, manifest, spine) → XHTML content documents. That is ~100 lines with the XML parser we already
  use for HTML, and keeps the licence clean (EbookLib is AGPL).
- Reading order is the spine (every itemref, in order, `linear="no"` included: footnotes stay findable). Each
  spine item's text (`markup.extract`) is one stretch of `Document.text`, items separated by a blank line;
  `parts` records where each item starts, so a citation can say "chapter3.xhtml+1234" (the item's path inside
  the zip, relative to the OPF, and the character offset into that item's extracted text).
- Chapters: the EPUB 3 navigation document (`<nav epub:type="toc">`, nested `<ol>`) or else the EPUB 2 NCX
  (`navMap`, nested `navPoint`). Each entry's `href#fragment` is resolved against the item's anchors; an entry
  whose target is missing is skipped; the nesting depth is the level (`chapters.py` keeps the shallowest level
  used at least twice). No navigation, or none that resolves: the plain-text heading detection runs on the
  extracted text.
- DRM: `META-INF/rights.xml` (Adobe ADEPT), `META-INF/sinf.xml` (Apple FairPlay), or an `encryption.xml` that
  encrypts anything other than fonts with the IDPF/Adobe font-obfuscation algorithms is refused with what to do.
  A damaged zip, a zip that is no EPUB (no container.xml), a missing package document: each one `InputError`.
- Title: the OPF's `dc:title`, else the Gutenberg `Title:` line, else the file name.
"""
from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag

from lxml import etree

from ..errors import InputError
from . import markup
from .load import Document, Part, TocEntry, _gutenberg_title, _make

FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
DRM_FILES = {"META-INF/rights.xml": "Adobe DRM", "META-INF/sinf.xml": "Apple FairPlay DRM"}
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # a zip bomb is refused, not inflated
_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False, recover=True)


def _xml(z: zipfile.ZipFile, member: str, name: str) -> Any:
    try:
        root = etree.fromstring(_member(z, member, name), _XML)
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        raise InputError(f'"{name}" is a damaged EPUB ({member} is not XML) — re-download it, or export it again '
                         "as EPUB")
    return root


def _member(z: zipfile.ZipFile, member: str, name: str) -> bytes:
    try:
        info = z.getinfo(member)
        if info.file_size > MAX_MEMBER_BYTES:
            raise InputError(f'"{name}" holds a {info.file_size >> 20} MiB member {member} — too large for a book; '
                             "check the file")
        return z.read(info)
    except KeyError:
        raise InputError(f'"{name}" is a damaged EPUB ({member} is missing) — re-download it, or export it '
                         "again as EPUB") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
            zlib.error) as e:
        raise InputError(f'"{name}" is a damaged EPUB ({member}: {" ".join(str(e).split()) or type(e).__name__}) — '
                         "re-download it, or export it again as EPUB") from None


def _local(el: Any) -> str:
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c) == name]


def _check_drm(z: zipfile.ZipFile, names: set[str], name: str) -> None:
    for f, what in DRM_FILES.items():
        if f in names:
            raise InputError(f'"{name}" is DRM-protected ({what}, {f}) — docstream reads only DRM-free EPUBs; '
                             "export a DRM-free copy from the shop or program you bought it with")
    if "META-INF/encryption.xml" not in names:
        return
    root = _xml(z, "META-INF/encryption.xml", name)
    for data in root.iter():
        if _local(data) != "EncryptedData":
            continue
        algo = next((m.get("Algorithm", "") for m in data.iter() if _local(m) == "EncryptionMethod"), "")
        uri = next((r.get("URI", "") for r in data.iter() if _local(r) == "CipherReference"), "")
        if algo not in FONT_OBFUSCATION:
            raise InputError(f'"{name}" is DRM-protected (META-INF/encryption.xml encrypts {uri or "its content"}) '
                             "— docstream reads only DRM-free EPUBs; export a DRM-free copy from the shop or "
                             "program you bought it with")


def _opf_path(z: zipfile.ZipFile, names: set[str], name: str) -> str:
    if "META-INF/container.xml" not in names:
        raise InputError(f'"{name}" is a zip archive but not an EPUB (no META-INF/container.xml) — export the book '
                         "as EPUB, or unpack it and pass the text file")
    root = _xml(z, "META-INF/container.xml", name)
    for rf in root.iter():
        if _local(rf) == "rootfile" and rf.get("full-path"):
            return unquote(rf.get("full-path"))
    raise InputError(f'"{name}" is a damaged EPUB (container.xml names no package document) — re-download it, or '
                     "export it again as EPUB")


def _join(base_dir: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(base_dir, unquote(href))) if href else ""


def load_epub(path: Path, raw: bytes) -> Document:
    """Read an EPUB's spine into one text (see the module docstring)."""
    name = path.name
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        names = set(z.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(f'"{name}" is a damaged EPUB (not a readable zip archive: {" ".join(str(e).split())}) — '
                         "re-download it, or export it again as EPUB") from None
    with z:
        _check_drm(z, names, name)
        opf = _opf_path(z, names, name)
        pkg = _xml(z, opf, name)
        base = posixpath.dirname(opf)
        manifest: dict[str, tuple[str, str, str]] = {}  # id → (zip path, media type, properties)
        for item in pkg.iter():
            if _local(item) == "item" and item.get("id") and item.get("href"):
                manifest[item.get("id")] = (_join(base, item.get("href")), item.get("media-type", ""),
                                            item.get("properties", ""))
        spine_el = next((e for e in pkg.iter() if _local(e) == "spine"), None)
        spine = [manifest[i.get("idref")][0] for i in (spine_el if spine_el is not None else [])
                 if _local(i) == "itemref" and i.get("idref") in manifest]
        if not spine:
            raise InputError(f'"{name}" is a damaged EPUB (its spine lists no content) — re-download it, or export it '
                             "again as EPUB")
        title = next((" ".join((e.text or "").split()) for e in pkg.iter() if _local(e) == "title"
                      and (e.text or "").strip()), None)

        pieces: list[str] = []
        parts: list[Part] = []
        anchors: dict[tuple[str, str], int] = {}  # (zip path, fragment or "") → offset in the whole text
        warnings: list[str] = []
        pos = 0
        for member in spine:
            if member not in names:
                warnings.append(f'"{name}": spine item {member} is missing from the archive; skipped')
                continue
            ex = markup.extract(markup.parse(_member(z, member, name)))
            if pos and ex.text:
                pieces.append("\n\n")
                pos += 2
            shown = posixpath.relpath(member, base) if base else member
            parts.append(Part(pos, "item", shown))
            anchors.setdefault((member, ""), pos)
            for frag, off in ex.anchors.items():
                anchors.setdefault((member, frag), pos + off)
            pieces.append(ex.text)
            pos += len(ex.text)
        text = "".join(pieces)
        toc = _nav(z, names, manifest, spine_el, anchors, name) or None
    return _make(path, raw, text, "utf-8", warnings, lambda t, s: title or _gutenberg_title(t, s), kind="epub",
                 toc=toc, parts=parts)


def _nav(z: zipfile.ZipFile, names: set[str], manifest: dict[str, tuple[str, str, str]], spine_el: Any,
         anchors: dict[tuple[str, str], int], name: str) -> list[TocEntry]:
    """Chapter starts from the EPUB 3 nav document, else the EPUB 2 NCX; [] when neither resolves."""
    entries: list[tuple[int, str, str]] = []  # (level, target zip path#fragment, title)
    nav = next((m for m, _, props in manifest.values() if "nav" in props.split()), None)
    if nav and nav in names:
        root = markup.parse(_member(z, nav, name))
        navs = [e for e in root.iter() if markup._local(e.tag) == "nav"] if root is not None else []
        toc = next((e for e in navs if "toc" in (e.get("{http://www.idpf.org/2007/ops}type") or e.get("epub:type")
                                                  or e.get("role") or "")), navs[0] if navs else None)
        if toc is not None:
            _nav_list(toc, 0, posixpath.dirname(nav), entries)
    if not entries:
        ncx_id = spine_el.get("toc") if spine_el is not None else None
        ncx = manifest.get(ncx_id or "", (None,))[0] or next(
            (m for m, mt, _ in manifest.values() if mt == "application/x-dtbncx+xml"), None)
        if ncx and ncx in names:
            root = _xml(z, ncx, name)
            nav_map = next((e for e in root.iter() if _local(e) == "navMap"), None)
            if nav_map is not None:
                _ncx_points(nav_map, 1, posixpath.dirname(ncx), entries)
    out: list[TocEntry] = []
    for level, target, title in entries:
        member, frag = urldefrag(target)
        off = anchors.get((member, unquote(frag)))
        if off is not None and title:
            out.append(TocEntry(off, off, level, title))
    out.sort(key=lambda t: t.char_start)  # stable: entries at one offset keep their navigation order
    return out


def _nav_list(el: Any, depth: int, base: str, out: list[tuple[int, str, str]]) -> None:
    for child in el:
        tag = markup._local(child.tag)
        if tag == "ol":
            for li in child:
                if markup._local(li.tag) != "li":
                    continue
                link = next((a for a in li if markup._local(a.tag) in ("a", "span")), None)
                if link is not None and link.get("href"):
                    target, frag = urldefrag(link.get("href"))
                    title = " ".join("".join(link.itertext()).split())
                    out.append((depth + 1, f"{_join(base, target)}#{frag}", title))
                _nav_list(li, depth + 1, base, out)
        elif tag not in ("a", "span", "li"):
            _nav_list(child, depth, base, out)


def _ncx_points(el: Any, level: int, base: str, out: list[tuple[int, str, str]]) -> None:
    for point in _children(el, "navPoint"):
        label = next((t for t in point.iter() if _local(t) == "text"), None)
        content = next((c for c in _children(point, "content")), None)
        src = content.get("src", "") if content is not None else ""
        if src:
            path, _, frag = src.partition("#")
            out.append((level, f"{_join(base, path)}#{frag}", " ".join("".join(label.itertext()).split())
                        if label is not None else ""))
        _ncx_points(point, level + 1, base, out)

"""Trees <-> tars: deterministic layer tars, compression, tree scanning and safe extraction.

    entry       TarEntry, Kind, sort_entries: the data model (standard library only)
    tree        scan(), entry_from_stat(): host directory -> entries
    tarwriter   write_tar(): entries -> deterministic PAX tar stream
    compress    Compression, LayerWriter, build_layer(): tar -> blob, digest and diff_id in one pass
    decompress  open_layer(): blob -> tar stream (gzip, zstd or plain, verified as it is read)
    scope       Scope: path lookups confined to a directory (used by extract)
    extract     apply_layer(), extract_layers(), Owner: blob -> rootfs, OCI whiteouts, rootless
    snapshot    snapshot(): a rootfs's metadata before a RUN step
    diff        diff(): the layer a RUN step made (whiteouts, opaque dirs, hard links, owners)

Digests here are plain "sha256:<hex>" strings: this package imports only the standard library,
isal, zstandard and ocibuild.errors.
"""

"""Test helpers shared by ocibuild's test suites; none of them imports ocibuild.

- `require`   — skip locally / fail under CI=true when a tool or condition is missing
- `ocilayout` — a small, independent reader of OCI layouts and OCI archives
- `validate`  — the one validator for layouts, archives, manifests and layers, used by the
                tests of every writer; `toolcheck` runs skopeo, umoci and oci-image-tool for it
- `imagetree` — applies an image's layers in memory and returns its file tree and config
- `buildah`   — drives buildah as the independent reference builder
- `cases`     — loads the golden folders under fixtures/valid and checks their `expect:` facts
"""

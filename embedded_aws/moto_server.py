"""``python -m embedded_aws.moto_server`` — moto's server with jukinet's corrections
(``moto_patches``, ``moto_code_hash``) applied first. Arguments are moto.server's."""

from __future__ import annotations

from embedded_aws import moto_code_hash, moto_patches

if __name__ == "__main__":
    moto_patches.apply_server()
    moto_code_hash.apply()
    from moto.server import main

    main()

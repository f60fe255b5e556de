"""Runs one session of imitune (a third-party XML OMA DM 1.2 client, PyPI) against
a DM server, as the interoperability test drives it.

usage: imitune_session.py SERVER_URL DEVICE_ID WORK_DIR

imitune needs a PKCS#12 client certificate (plain HTTP does not use it) and a
managementTree.json of node values in WORK_DIR/DEVICE_ID/; both are made here.
"""
import datetime
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from imitune import oma_dm_client


def make_pfx(path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imitune-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    blob = pkcs12.serialize_key_and_certificates(
        b"imitune", key, cert, None, serialization.BestAvailableEncryption(b"pw")
    )
    with open(path, "wb") as f:
        f.write(blob)


def main():
    url, device, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.chdir(work)
    os.makedirs(device, exist_ok=True)
    tree = {
        "./DevInfo/DevId": device,
        "./DevInfo/Man": "Imitune Inc",
        "./DevInfo/Mod": "PyDevice",
        "./DevInfo/DmV": "1.2",
        "./DevInfo/Lang": "en-US",
        "./Vendor/MSFT/DMClient/HWDevID": "HW-42",
        "./DevDetail/FwV": "fw-7.1",
    }
    with open(os.path.join(device, "managementTree.json"), "w") as f:
        json.dump(tree, f)
    make_pfx("client.pfx")
    oma_dm_client.INTUNE_ENDPOINT = url
    oma_dm_client.INTUNE_TARGET = url
    client = oma_dm_client.OMADMClient(device, "client.pfx", "pw", device)
    client.intuneInit()
    print("imitune session done")


if __name__ == "__main__":
    main()

"""Drives the reimage emulator with the official Zenlayer Python SDK.

A cross-check of the emulator against a client we did not write: if the SDK can sign, describe
and reinstall against the emulator, the emulator reads the envelope, headers and signature as
the real API's own client writes them.

Not run by `cargo test` by default. To run it:

    python3 -m venv /tmp/zl-sdk && /tmp/zl-sdk/bin/pip install zenlayercloud-sdk-python
    REIMAGE_ZENLAYER_SDK_PYTHON=/tmp/zl-sdk/bin/python \
        cargo test --lib emulator::tests::official_python_sdk -- --ignored

or by hand against `reimage emulator serve`:

    python tests/sdk/zenlayer_python_sdk.py --domain 127.0.0.1:PORT \
        --key-id ZLAKEMULATOR0001 --key-password EmulatorPassword0001 \
        --instance-id 1001 --image-id img-ubuntu-2404

Prints one JSON object (what each step saw) and exits non-zero on the first surprise.
"""

import argparse
import json
import sys

from zenlayercloud.common.config import Config
from zenlayercloud.common.credential import Credential
from zenlayercloud.common.excpetion.zenlayer_cloud_sdk_exception import (
    ZenlayerCloudSdkException,
)


def client_for(version, domain, key_id, key_password):
    if version == "2022-11-20":
        from zenlayercloud.bmc.v20221120 import bmc_client, models
    else:
        from zenlayercloud.bmc.v20260201 import bmc_client, models
    config = Config(scheme="http", domain=domain, rate_limit_max_retries=0)
    return bmc_client.BmcClient(Credential(key_id, key_password), config), models


def status_of(client, models, instance_id):
    request = models.DescribeInstancesRequest()
    request.instanceIds = [instance_id]
    response = client.DescribeInstances(request)
    if response.totalCount != 1 or len(response.dataSet) != 1:
        raise SystemExit("DescribeInstances did not return exactly the one instance asked for")
    instance = response.dataSet[0]
    return {
        "instanceId": instance.instanceId,
        "instanceStatus": instance.instanceStatus,
        "imageId": instance.imageId,
        "hostname": instance.hostname,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--domain", required=True, help="host:port of the emulator")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--key-password", required=True)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--image-id", required=True)
    parser.add_argument("--version", default="2022-11-20", choices=["2022-11-20", "2026-02-01"])
    args = parser.parse_args()

    seen = {}
    client, models = client_for(args.version, args.domain, args.key_id, args.key_password)
    seen["before"] = status_of(client, models, args.instance_id)

    images = client.DescribeImages(models.DescribeImagesRequest())
    seen["images"] = [image.imageId for image in images.images]

    request = models.ReinstallInstanceRequest()
    request.instanceId = args.instance_id
    request.imageId = args.image_id
    request.hostname = "sdk-check"
    request.password = "Sdk-Check-42"
    client.ReinstallInstance(request)
    seen["after_reinstall"] = status_of(client, models, args.instance_id)
    if seen["after_reinstall"]["instanceStatus"] != "INSTALLING":
        raise SystemExit("expected INSTALLING right after ReinstallInstance: %s" % seen)

    try:
        client.ReinstallInstance(request)
        raise SystemExit("a second reinstall while INSTALLING was accepted")
    except ZenlayerCloudSdkException as error:
        seen["second_reinstall_error"] = error.code

    wrong, _ = client_for(args.version, args.domain, args.key_id, args.key_password + "x")
    try:
        status_of(wrong, models, args.instance_id)
        raise SystemExit("a wrong access key password was accepted")
    except ZenlayerCloudSdkException as error:
        seen["wrong_password_error"] = error.code

    print(json.dumps(seen))


if __name__ == "__main__":
    sys.exit(main())

"""Drives the reimage emulator with the official JD Cloud Python SDK (`jdcloud-sdk` on PyPI).

A cross-check of the emulator against a client we did not write: the SDK signs with
JDCLOUD3-HMAC-SHA256 (only `content-type;host` signed), sends the action colon literally and
puts every parameter (path ones and nulls included) in the body. If it can describe, stop,
reinstall (twice with one clientToken) and poll against the emulator, the emulator reads the API
as JD's own client writes it.

Not run by `cargo test` by default. To run it:

    python3 -m venv /tmp/jd-sdk && /tmp/jd-sdk/bin/pip install jdcloud-sdk
    REIMAGE_JDCLOUD_SDK_PYTHON=/tmp/jd-sdk/bin/python \
        cargo test --lib emulator::jdcloud::tests::official_python_sdk -- --ignored

or by hand against `reimage emulator serve`:

    python tests/sdk/jdcloud_python_sdk.py --endpoint 127.0.0.1:PORT \
        --access-key AK --secret-key SK --region cn-east-1 \
        --instance-id cps-... --os-type-id ...

Prints one JSON object (what each step saw) and exits non-zero on the first surprise.
"""

import argparse
import json
import sys
import time

from jdcloud_sdk.core.config import Config
from jdcloud_sdk.core.const import SCHEME_HTTP
from jdcloud_sdk.core.credential import Credential
from jdcloud_sdk.core.logger import FATAL, Logger
from jdcloud_sdk.services.common.models.Filter import Filter
from jdcloud_sdk.services.cps.apis.DescribeInstancesRequest import (
    DescribeInstancesParameters,
    DescribeInstancesRequest,
)
from jdcloud_sdk.services.cps.apis.DescribeOSRequest import (
    DescribeOSParameters,
    DescribeOSRequest,
)
from jdcloud_sdk.services.cps.apis.ReinstallInstanceRequest import (
    ReinstallInstanceParameters,
    ReinstallInstanceRequest,
)
from jdcloud_sdk.services.cps.apis.StopInstanceRequest import (
    StopInstanceParameters,
    StopInstanceRequest,
)
from jdcloud_sdk.services.cps.client.CpsClient import CpsClient
from jdcloud_sdk.services.cps.models.ReinstallInstanceSpec import ReinstallInstanceSpec


def fail(message, seen):
    seen["error"] = message
    print(json.dumps(seen, indent=2, ensure_ascii=False))
    sys.exit(1)


def checked(response, what, seen):
    if response.error is not None:
        fail(
            "%s: %s %s %s"
            % (what, response.error.code, response.error.status, response.error.message),
            seen,
        )
    return response.result


def describe(client, region, instance_id, seen):
    parameters = DescribeInstancesParameters(region)
    parameters.setPageSize(100)
    parameters.setFilters([Filter("instanceId", [instance_id])])
    result = checked(client.send(DescribeInstancesRequest(parameters)), "describeInstances", seen)
    instances = result.get("instances") or []
    if result.get("totalCount") != 1 or len(instances) != 1:
        fail("describeInstances did not return exactly the one instance asked for", seen)
    instance = instances[0]
    return {key: instance.get(key) for key in ("instanceId", "status", "osTypeId", "az",
                                                "sysRaidTypeId", "dataRaidTypeId", "imageType")}


def wait_for(client, region, instance_id, status, seen):
    for _ in range(200):
        instance = describe(client, region, instance_id, seen)
        if instance["status"] == status:
            return instance
        time.sleep(0.05)
    fail("%s never reached %s" % (instance_id, status), seen)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="host:port of the emulator")
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--instance-id", required=True, help="a running server")
    parser.add_argument("--os-type-id", required=True, help="the OS to install")
    args = parser.parse_args()

    # The SDK's default logger prints request bodies (passwords included): keep it quiet.
    client = CpsClient(
        Credential(args.access_key, args.secret_key),
        Config(endpoint=args.endpoint, scheme=SCHEME_HTTP, timeout=10),
        Logger(FATAL),
    )
    seen = {}
    before = describe(client, args.region, args.instance_id, seen)
    seen["before"] = before

    os_parameters = DescribeOSParameters(args.region, "cps.c.normal")
    oss = checked(client.send(DescribeOSRequest(os_parameters)), "describeOS", seen)
    seen["os_type_ids"] = [os["osTypeId"] for os in oss.get("oss") or []]

    stop = StopInstanceParameters(args.region, args.instance_id)
    stop.setClientToken("sdk-check-stop-0001")
    seen["stop"] = checked(client.send(StopInstanceRequest(stop)), "stopInstance", seen)
    seen["stopped"] = wait_for(client, args.region, args.instance_id, "stopped", seen)

    spec = ReinstallInstanceSpec(
        az=before["az"],
        imageType=(before["imageType"] or "standard").lower(),
        osTypeId=args.os_type_id,
        sysRaidTypeId=before["sysRaidTypeId"],
        keepData="yes",
        password="SdkCheck2025",
        dataRaidTypeId=before["dataRaidTypeId"],
        hostname="sdk-check",
    )
    reinstall = ReinstallInstanceParameters(args.region, args.instance_id, spec)
    reinstall.setClientToken("sdk-check-reinstall-0001")
    seen["reinstall"] = checked(
        client.send(ReinstallInstanceRequest(reinstall)), "reinstallInstance", seen
    )
    # The same clientToken again: the first result, and no second install.
    seen["reinstall_again"] = checked(
        client.send(ReinstallInstanceRequest(reinstall)), "reinstallInstance (replay)", seen
    )
    seen["after_reinstall"] = describe(client, args.region, args.instance_id, seen)
    seen["final"] = wait_for(client, args.region, args.instance_id, "running", seen)
    if seen["final"]["osTypeId"] != args.os_type_id:
        fail("the install did not end with the requested osTypeId", seen)
    print(json.dumps(seen, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Drives reimage's Huawei Cloud emulator with the official Python SDKs, as an independent check
that the emulator speaks the real API (paths, bodies, SDK-HMAC-SHA256, IAM project lookup).

Setup (never committed):
    python3 -m venv /tmp/hwsdk
    /tmp/hwsdk/bin/pip install huaweicloudsdkecs huaweicloudsdkclouddc
Run through the ignored test `official_python_sdks_drive_the_huawei_emulator`
(REIMAGE_HUAWEI_SDK_PYTHON=/tmp/hwsdk/bin/python), or by hand against `reimage emulator serve`.

Prints one JSON object with what the SDKs saw.
"""

import argparse
import json
import os
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkecs.v2 import (
    ChangeServerOsWithoutCloudInitOption,
    ChangeServerOsWithoutCloudInitRequest,
    ChangeServerOsWithoutCloudInitRequestBody,
    EcsClient,
    ListServersDetailsRequest,
    ShowJobRequest,
    ShowServerRequest,
)
from huaweicloudsdkclouddc.v1 import (
    CloudDCClient,
    ListInstancesRequest,
    ReinstallOsRequest,
)
from huaweicloudsdkclouddc.v1.model.reinstall_os_options import ReinstallOSOptions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ak", required=True)
    parser.add_argument("--sk", required=True)
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--server-id", required=True)
    parser.add_argument("--image-id", required=True)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--dc-image-id", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    seen = {}

    # ECS with an explicit project id.
    ecs = (
        EcsClient.new_builder()
        .with_credentials(BasicCredentials(args.ak, args.sk, args.project_id))
        .with_endpoints([args.endpoint])
        .build()
    )
    listed = ecs.list_servers_details(ListServersDetailsRequest(server_id=args.server_id + ",unknown-id"))
    seen["listed"] = [
        {"id": s.id, "status": s.status, "image": s.image.id if s.image else None} for s in listed.servers
    ]
    body = ChangeServerOsWithoutCloudInitRequestBody(
        os_change=ChangeServerOsWithoutCloudInitOption(
            adminpass=args.password, imageid=args.image_id, mode="withStopServer"
        )
    )
    job_id = ecs.change_server_os_without_cloud_init(
        ChangeServerOsWithoutCloudInitRequest(server_id=args.server_id, body=body)
    ).job_id
    statuses = []
    for _ in range(200):
        job = ecs.show_job(ShowJobRequest(job_id=job_id))
        if not statuses or statuses[-1] != job.status:
            statuses.append(job.status)
        if job.status in ("SUCCESS", "FAIL"):
            break
        time.sleep(0.1)
    seen["job_statuses"] = statuses
    server = ecs.show_server(ShowServerRequest(server_id=args.server_id)).server
    seen["after_change"] = {"status": server.status, "image": server.image.id}

    # A wrong secret key: the gateway's 401.
    wrong = (
        EcsClient.new_builder()
        .with_credentials(BasicCredentials(args.ak, args.sk + "x", args.project_id))
        .with_endpoints([args.endpoint])
        .build()
    )
    try:
        wrong.list_servers_details(ListServersDetailsRequest(server_id=args.server_id))
        seen["wrong_key"] = "accepted"
    except exceptions.ClientRequestException as error:
        seen["wrong_key"] = {"status": error.status_code, "code": error.error_code}

    # CloudDC without a project id: the SDK looks it up through the emulator's IAM.
    os.environ["HUAWEICLOUD_SDK_IAM_ENDPOINT"] = args.endpoint
    clouddc = (
        CloudDCClient.new_builder()
        .with_credentials(BasicCredentials(args.ak, args.sk))
        .with_region(Region(args.region, args.endpoint))
        .build()
    )
    instances = clouddc.list_instances(ListInstancesRequest(instance_id=args.instance_id, limit=100))
    seen["instances"] = [{"id": i.id, "state": i.state} for i in instances.instances]
    reinstalled = clouddc.reinstall_os(
        ReinstallOsRequest(
            body=ReinstallOSOptions(
                image_id=args.dc_image_id, password=args.password, instance_id_set=[args.instance_id]
            )
        )
    )
    seen["reinstall_accepted"] = [i.id for i in reinstalled.instances]
    after = clouddc.list_instances(ListInstancesRequest(instance_id=args.instance_id))
    seen["after_reinstall"] = [
        {"state": i.state, "operation_state": i.operation_state} for i in after.instances
    ]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()

"""Profiles for the roles of a deployed environment (embedded_aws/client_env.py): a profile
for every role people or systems assume, none for a role only AWS services assume; each holds
a session of its role. And a fixed port that is taken is refused before anything starts."""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from embedded_aws.client_env import deployed_role_profiles
from embedded_aws.model import DeployedEnvironment, ResourceStatus, StackReport
from embedded_aws.server import MotoServer, MotoServerError

REGION, ACCOUNT = "ap-northeast-1", "123456789012"


def _trust(principal: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": ["sts:AssumeRole", "sts:AssumeRoleWithSAML"]}]})


def test_every_role_people_or_systems_assume_gets_a_profile_holding_a_session_of_that_role():
    roles = {  # name: (path, trusted principal)
        "jukinet-national-operator": ("/jukinet/national-people/",
                                      {"Federated": f"arn:aws:iam::{ACCOUNT}:saml-provider/idp"}),
        "jukinet-202011-writer": ("/jukinet/muni-200000-writers/", {"AWS": "arn:aws:iam::210987654321:root"}),
        "jukinet-202011-counter": ("/jukinet/muni-200000-counter/", {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}),
        "jukinet-cs-202011": ("/jukinet/muni-200000/", {"Service": "lambda.amazonaws.com"}),
        "jukinet-national-FlowLogsRole": ("/jukinet/national-service/", {"Service": "vpc-flow-logs.amazonaws.com"}),
    }
    with MotoServer() as aws:
        iam = aws.client("iam", REGION)
        for name, (path, principal) in roles.items():
            iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=_trust(principal))
        stack = StackReport("national", "jukinet-national", "id", ACCOUNT, REGION, "CREATE_COMPLETE",
                            resources=[ResourceStatus(f"R{i}", "AWS::IAM::Role", "CREATED", name)
                                       for i, name in enumerate(roles)])
        env = DeployedEnvironment(aws.endpoint_url, {"jukinet-national": stack}, [], [], [], {})

        profiles = {p.name: p for p in deployed_role_profiles(env)}

        assert {n: p.kind for n, p in profiles.items()} == {
            "jukinet-national-operator": "people", "jukinet-202011-writer": "writer", "jukinet-202011-counter": "counter"}
        operator = profiles["jukinet-national-operator"]
        who = boto3.client("sts", endpoint_url=aws.endpoint_url, region_name=REGION,
                           aws_access_key_id=operator.access_key_id, aws_secret_access_key=operator.secret_access_key,
                           aws_session_token=operator.session_token).get_caller_identity()
        assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/jukinet-national-operator/local"


def test_a_fixed_port_in_use_is_refused_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MotoServerError, match="in use"):
            MotoServer(port=taken.getsockname()[1]).start()

"""Template pre-processing: what moto's CloudFormation is given instead of the synthesized template."""

from __future__ import annotations

import json

from embedded_aws.emulate import API_CREATED, RESOLVED_PROPERTIES, without_conditional_statements
from embedded_aws.template import PLACEHOLDER_PREFIX, RESOLVED_OUTPUT_PREFIX, analyse, rewrite


def _prepare(resources: dict, outputs: dict | None = None, literals: dict | None = None):
    template = {"Resources": resources}
    if outputs:
        template["Outputs"] = outputs
    prepared = analyse(template, api_emulated=frozenset(API_CREATED), needs_resolution=RESOLVED_PROPERTIES)
    return prepared, rewrite(prepared, literals or {})


QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {}}
FUNCTION = {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "x.handler", "Environment": {"Variables": {}}}}


def test_custom_resource_is_dropped_and_its_attributes_become_placeholders():
    prepared, body = _prepare({
        "Provider": {"Type": "Custom::Thing", "Properties": {"ServiceToken": "arn"}},
        "Fn": {**FUNCTION, "Properties": {**FUNCTION["Properties"], "Environment": {"Variables": {
            "VALUE": {"Fn::GetAtt": ["Provider", "Value"]}, "NAME": {"Ref": "Provider"},
            "JOINED": {"Fn::Sub": "x-${Provider.Value}-y"}}}}, "DependsOn": ["Provider"]},
    })
    assert "Provider" not in body["Resources"]
    assert "DependsOn" not in body["Resources"]["Fn"]
    variables = body["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]
    assert variables == {"VALUE": f"{PLACEHOLDER_PREFIX}Provider.Value", "NAME": f"{PLACEHOLDER_PREFIX}Provider",
                         "JOINED": {"Fn::Sub": f"x-{PLACEHOLDER_PREFIX}Provider.Value-y"}}
    assert {n.action for n in prepared.notes} >= {"dropped-custom-resource", "placeholder"}


def test_sqs_mapping_is_created_disabled_and_its_synthesized_state_kept():
    prepared, body = _prepare({
        "Queue": QUEUE, "Fn": FUNCTION,
        "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]}, "FunctionName": {"Ref": "Fn"}}},
        "Paused": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]}, "FunctionName": {"Ref": "Fn"}, "Enabled": False}},
    })
    assert body["Resources"]["Mapping"]["Properties"]["Enabled"] is False
    assert prepared.esm_enabled == {"Mapping": True, "Paused": False}


def test_stream_mapping_is_dropped_because_moto_invokes_it_even_when_disabled():
    prepared, body = _prepare({
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}}, "Fn": FUNCTION,
        "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Table", "StreamArn"]}, "FunctionName": {"Ref": "Fn"}}},
    })
    assert "Mapping" not in body["Resources"]
    assert prepared.dropped["Mapping"] == "AWS::Lambda::EventSourceMapping"


def test_signing_key_is_precreated_and_references_become_literals():
    signing = {"Type": "AWS::KMS::Key", "Properties": {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
                                                        "KeyPolicy": {"Statement": []}}}
    prepared, body = _prepare(
        {"Signing": signing, "Alias": {"Type": "AWS::KMS::Alias", "Properties": {
            "AliasName": "alias/x", "TargetKeyId": {"Fn::GetAtt": ["Signing", "Arn"]}}},
         "Fn": {**FUNCTION, "Properties": {**FUNCTION["Properties"], "Environment": {"Variables": {
             "KEY": {"Ref": "Signing"}, "ARN": {"Fn::Sub": "${Signing.Arn}"}}}}}},
        literals={"Signing": {"Ref": "k-1", "KeyId": "k-1", "Arn": "arn:aws:kms:r:1:key/k-1"}},
    )
    assert list(prepared.precreate_keys) == ["Signing"]
    assert "Signing" not in body["Resources"]
    assert body["Resources"]["Alias"]["Properties"]["TargetKeyId"] == "arn:aws:kms:r:1:key/k-1"
    assert body["Resources"]["Fn"]["Properties"]["Environment"]["Variables"] == {
        "KEY": "k-1", "ARN": {"Fn::Sub": "arn:aws:kms:r:1:key/k-1"}}
    # Its policy is still resolved by moto, for the deployer to apply through KMS.
    assert prepared.resolved_outputs[f"{RESOLVED_OUTPUT_PREFIX}Signing"] == "Signing"


def test_getatt_moto_lacks_but_equal_to_ref_becomes_ref():
    _, body = _prepare({"Queue": QUEUE, "Fn": {**FUNCTION, "Properties": {**FUNCTION["Properties"], "Environment": {
        "Variables": {"URL": {"Fn::GetAtt": ["Queue", "QueueUrl"]}, "SUB": {"Fn::Sub": "${Queue.QueueUrl}"}}}}}})
    assert body["Resources"]["Fn"]["Properties"]["Environment"]["Variables"] == {
        "URL": {"Ref": "Queue"}, "SUB": {"Fn::Sub": "${Queue}"}}


def test_unsupported_type_is_dropped_and_resolved_through_an_output():
    _, body = _prepare({
        "Queue": QUEUE,
        "Policy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "Queue"}], "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}}]}}},
    })
    key = f"{RESOLVED_OUTPUT_PREFIX}Policy"
    assert "Policy" not in body["Resources"]
    value = body["Outputs"][key]["Value"]["Fn::ToJsonString"]
    assert value["props"]["Queues"] == [{"Ref": "Queue"}]
    assert "ref" not in value  # it has no physical id: moto never created it


def test_policy_statements_with_conditions_are_left_out_for_moto():
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "TLS", "Effect": "Deny", "Action": "s3:*", "Principal": {"AWS": "*"}, "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Principal": {"AWS": "*"}, "Resource": "*"},
    ]}
    kept, removed = without_conditional_statements(json.dumps(policy), ("Allow", "Deny"))
    assert kept["Statement"] == [policy["Statement"][1]]
    assert removed == ["Deny statement TLS (condition on aws:SecureTransport)"]

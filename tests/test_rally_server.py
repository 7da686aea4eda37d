"""The Rally test server behaves like Rally: each rule a client depends on, driven with requests."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from typing import Any

import pytest
import requests
from rally_server import (
    API,
    API_KEY,
    INVALID_KEY,
    PASSWORD,
    READ_ONLY_KEY,
    USER,
    QueryError,
    RunningRally,
    check_request,
    parse_query,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def keyed(rally: RunningRally, key: str = API_KEY) -> requests.Session:
    session = requests.Session()
    session.headers["ZSESSIONID"] = key
    return session


def basic(user: str = USER, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    session.auth = (user, password)
    return session


def create(
    s: requests.Session, rally: RunningRally, kind: str, fields: dict[str, Any], key: str = ""
) -> dict[str, Any]:
    params = {"key": key} if key else None
    r = s.post(f"{rally.api}/{kind.lower()}/create", json={kind: fields}, params=params)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["CreateResult"]
    return result


def query(s: requests.Session, rally: RunningRally, kind: str, **params: Any) -> dict[str, Any]:
    r = s.get(f"{rally.api}/{kind}", params=params)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["QueryResult"]
    return result


def file_defect(s: requests.Session, rally: RunningRally, **fields: Any) -> dict[str, Any]:
    done = create(s, rally, "Defect", {"Name": "cart total is off by one", **fields})
    assert done["Errors"] == [], done
    obj: dict[str, Any] = done["Object"]
    return obj


# -- the contract --------------------------------------------------------------------------------


def test_contract_checks_paths_methods_and_query_parameters(rally_contract: Any) -> None:
    assert (
        check_request("GET", f"{API}/defect", {"query": ["(State = Open)"], "pagesize": ["5"]})
        == []
    )
    assert check_request("POST", f"{API}/defect/create", {"key": ["abc"]}) == []
    assert check_request("GET", f"{API}/defect", {"project": ["/project/1"]}) == []
    assert check_request("GET", f"{API}/security/authorize", {}) == []
    assert check_request("GET", f"{API}/TypeDefinition/1/Attributes", {"fetch": ["true"]}) == []
    (undeclared,) = check_request("GET", f"{API}/defect", {"maxResults": ["5"]})
    assert "undeclared query parameter 'maxResults'" in undeclared
    (typed,) = check_request("GET", f"{API}/defect", {"pagesize": ["many"]})
    assert "not an integer" in typed
    assert "not a boolean" in check_request("GET", f"{API}/tag", {"compact": ["yes"]})[0]
    assert "undeclared" in check_request("GET", f"{API}/defect/1", {"key": ["abc"]})[0]
    assert "undeclared" in check_request("POST", f"{API}/defect/create", {"fetch": ["true"]})[0]
    assert "method not declared" in check_request("PUT", f"{API}/defect/create", {})[0]
    assert "no such path" in check_request("GET", f"{API}/defect/1/Tasks", {})[0]
    assert "no such path" in check_request("GET", f"{API}/task", {})[0]  # not kept


def test_a_request_off_the_contract_is_recorded(rally: RunningRally) -> None:
    s = keyed(rally)
    r = s.get(f"{rally.api}/defect", params={"maxResults": "5"})
    assert r.status_code == 200  # served, as Rally would, but recorded
    assert s.get(f"{rally.api}/issue/1").status_code == 404
    assert s.put(f"{rally.api}/defect/create", json={"Defect": {"Name": "x"}}).status_code == 405
    taken = rally.state.take_violations()
    assert len(taken) == 3
    assert "undeclared query parameter 'maxResults'" in taken[0]
    assert "no such path" in taken[1]
    assert "method not declared" in taken[2]


# -- authentication ------------------------------------------------------------------------------


def test_api_key_reads_the_current_user_subscription_and_permissions(rally: RunningRally) -> None:
    s = keyed(rally)
    user = s.get(f"{rally.api}/user").json()["User"]
    assert (user["UserName"], user["Errors"]) == (USER, [])
    assert s.get(f"{rally.api}/subscription").json()["Subscription"]["Name"]
    (ws,) = query(s, rally, "workspace", query='(Name = "Shop WS")', fetch="Name")["Results"]
    assert ws["_ref"] == f"{rally.api}/workspace/{rally.state.workspace}"
    projects = query(
        s, rally, "project", query='(Name = "Shop")', fetch="Name,Workspace", workspace=ws["_ref"]
    )
    assert [p["Name"] for p in projects["Results"]] == ["Shop"]
    assert projects["Results"][0]["Workspace"]["_ref"] == ws["_ref"]
    perms = query(
        s,
        rally,
        "projectpermission",
        query=f'(User.UserName = "{USER}")',
        fetch="Role,Project,Name",
    )["Results"]
    roles = {p["Project"]["_refObjectName"]: p["Role"] for p in perms}
    assert roles == {"Shop": "Editor", "Archive": "Viewer"}
    assert perms[0]["Project"]["Name"] in roles  # the fetch list applies to the project too
    me = s.get(f"{rally.api}/user").json()["User"]["_ref"]
    viewer = f"{rally.api}/project/{rally.state.viewer_project}"
    (perm,) = query(
        s,
        rally,
        "projectpermission",
        query=f'((User = "{me}") AND (Project = "{viewer}"))',
        fetch="Role",
    )["Results"]
    assert perm["Role"] == "Viewer"  # how a client learns it cannot file into "Archive"


def test_basic_writes_need_the_sessions_security_token(rally: RunningRally) -> None:
    s = basic()
    assert query(s, rally, "defect")["TotalResultCount"] == 0  # reads need no token
    refused = create(s, rally, "Defect", {"Name": "no token"})
    assert refused["Errors"] == [INVALID_KEY] and "Object" not in refused
    assert create(s, rally, "Defect", {"Name": "bad"}, key="forged")["Errors"] == [INVALID_KEY]
    auth = s.get(f"{rally.api}/security/authorize").json()["OperationResult"]
    assert auth["Errors"] == [] and auth["SecurityToken"]
    token = auth["SecurityToken"]
    assert create(s, rally, "Defect", {"Name": "with token"}, key=token)["Errors"] == []
    # the token belongs to the session (JSESSIONID cookie): a cookie-less client is refused
    stranger = requests.post(
        f"{rally.api}/defect/create",
        params={"key": token},
        json={"Defect": {"Name": "cookie-less"}},
        auth=(USER, PASSWORD),
    )
    assert stranger.json()["CreateResult"]["Errors"] == [INVALID_KEY]
    # updates carry the key too, and answer OperationResult
    oid = rally.state.defects()[0]["ObjectID"]
    update = s.post(f"{rally.api}/defect/{oid}", json={"Defect": {"State": "Open"}})
    assert update.json()["OperationResult"]["Errors"] == [INVALID_KEY]
    rally.state.expire_tokens()
    expired = create(s, rally, "Defect", {"Name": "stale"}, key=token)
    assert expired["Errors"] == [INVALID_KEY]
    fresh = s.get(f"{rally.api}/security/authorize").json()["OperationResult"]["SecurityToken"]
    assert create(s, rally, "Defect", {"Name": "again"}, key=fresh)["Errors"] == []
    assert [d["Name"] for d in rally.state.defects()] == ["with token", "again"]


def test_refused_logins(make_rally: Callable[..., RunningRally]) -> None:
    saas = make_rally()
    assert basic(password="wrong").get(f"{saas.api}/user").status_code == 401
    assert keyed(saas, "_nope").get(f"{saas.api}/user").status_code == 401
    assert requests.get(f"{saas.api}/user").status_code == 401
    read_only = keyed(saas, READ_ONLY_KEY)
    assert read_only.get(f"{saas.api}/user").status_code == 200
    post = read_only.post(f"{saas.api}/defect/create", json={"Defect": {"Name": "x"}})
    assert post.status_code == 401 and saas.state.defects() == []
    on_prem = make_rally(on_prem=True)
    assert keyed(on_prem).get(f"{on_prem.api}/user").status_code == 401
    assert basic().get(f"{on_prem.api}/user").json()["User"]["UserName"] == USER
    disabled = make_rally(api_keys_disabled=True)
    assert keyed(disabled).get(f"{disabled.api}/user").status_code == 401


# -- defects -------------------------------------------------------------------------------------


def test_create_read_update_a_defect(rally: RunningRally) -> None:
    s = keyed(rally)
    first = file_defect(
        s,
        rally,
        Description="<p>expected <b>3</b></p>",
        Severity="Major Problem",
        Priority="High Attention",
        Environment="Test",
        FoundInBuild="1.4.2",
        c_Component="Cart",
        c_Fingerprint="abc123",
        Owner=f"/user/{rally.state.other_user}",
    )
    assert first["FormattedID"] == "DE1" and first["_refObjectName"] == "cart total is off by one"
    assert first["_ref"] == f"{rally.api}/defect/{first['ObjectID']}"
    assert (first["State"], first["ScheduleState"]) == ("Submitted", "Defined")
    assert first["Project"]["_refObjectName"] == "Shop"
    assert first["Workspace"]["_refObjectName"] == "Shop WS"
    assert first["Owner"]["_refObjectName"] == "Dev Person"
    assert first["CreationDate"] == first["LastUpdateDate"]
    assert file_defect(s, rally)["FormattedID"] == "DE2"
    ref = first["_ref"]
    done = s.post(ref, json={"Defect": {"State": "Open", "Notes": "seen again"}}).json()
    assert done["OperationResult"]["Errors"] == []
    assert done["OperationResult"]["Object"]["State"] == "Open"
    read = s.get(ref).json()["Defect"]
    assert (read["State"], read["Notes"], read["c_Component"]) == ("Open", "seen again", "Cart")
    assert read["LastUpdateDate"] > read["CreationDate"]
    only = s.get(ref, params={"fetch": "FormattedID,State"}).json()["Defect"]
    assert {k for k in only if not k.startswith("_")} == {
        "FormattedID",
        "State",
        "Errors",
        "Warnings",
    }
    rally.state.set_state("DE1", "Closed")
    assert s.get(ref).json()["Defect"]["State"] == "Closed"
    missing = s.get(f"{rally.api}/defect/999").json()["OperationResult"]["Errors"]
    assert missing == ["Cannot find object to read"]
    gone = s.post(f"{rally.api}/defect/999", json={"Defect": {"State": "Open"}}).json()
    assert gone["OperationResult"]["Errors"] == [
        "Could not read: Could not read Defect 999 to update."
    ]


def test_defect_payload_rules(rally: RunningRally) -> None:
    s = keyed(rally)
    for name, bad in (
        ("Severity", "Catastrophic"),
        ("Priority", "Urgent"),
        ("State", "Reopened"),
        ("Environment", "QA"),
        ("c_Component", "Kitchen"),
    ):
        done = create(s, rally, "Defect", {"Name": "x", name: bad})
        assert done["Errors"] == [
            f'Validation error: Defect.{name} "{bad}" is not an allowed value'
        ]
    assert create(s, rally, "Defect", {"Severity": "Cosmetic"})["Errors"] == [
        "Validation error: Defect.Name should not be null"
    ]
    viewer = f"/project/{rally.state.viewer_project}"
    assert create(s, rally, "Defect", {"Name": "x", "Project": viewer})["Errors"] == [
        "Not authorized to create: Defect"
    ]
    assert (
        "Could not read"
        in create(s, rally, "Defect", {"Name": "x", "Owner": "/user/5"})["Errors"][0]
    )
    wrong_root = s.post(f"{rally.api}/defect/create", json={"Bug": {"Name": "x"}}).json()
    assert wrong_root["CreateResult"]["Errors"]
    not_json = s.post(
        f"{rally.api}/defect/create", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.json()["CreateResult"]["Errors"][0].startswith("Cannot parse input stream")
    assert rally.state.defects() == []
    # an attribute Rally does not know is ignored with a warning, as Rally does
    done = create(s, rally, "Defect", {"Name": "x", "c_Missing": "1", "Labels": ["a"]})
    assert done["Errors"] == []
    assert done["Warnings"] == [
        "Ignored JSON element Defect.c_Missing during processing of this request.",
        "Ignored JSON element Defect.Labels during processing of this request.",
    ]
    assert "c_Missing" not in done["Object"]
    oid = done["Object"]["ObjectID"]
    refused = s.post(f"{rally.api}/defect/{oid}", json={"Defect": {"Project": viewer}}).json()
    assert refused["OperationResult"]["Errors"] == ["Not authorized to update: Defect"]
    assert s.delete(f"{rally.api}/defect/{oid}").json()["OperationResult"]["Errors"] == []
    assert rally.state.defects() == []


# -- the query language and paging ---------------------------------------------------------------


def test_parse_query_grammar() -> None:
    assert parse_query('(Name = "a b")') == ("CMP", "Name", "=", "a b", True)
    assert parse_query("((A = 1) AND ((B contains x) or (C.D != null)))") == (
        "AND",
        ("CMP", "A", "=", "1", False),
        ("OR", ("CMP", "B", "contains", "x", False), ("CMP", "C.D", "!=", "null", False)),
    )
    assert parse_query('(Name = "say \\"hi\\"")')[3] == 'say "hi"'
    for bad, saw in (
        ("Name = x", 'expected "(" but saw "Name"'),
        ("(Name = x", 'expected ")" but saw "end of input"'),
        ("((A = 1) AND (B = 2) AND (C = 3))", 'expected ")" but saw "AND"'),
        ("(A = 1) AND (B = 2)", 'expected "end of expression" but saw "AND"'),
        ("(A like 1)", 'expected "operator" but saw "like"'),
        ("(A =)", 'expected "value" but saw ")"'),
    ):
        with pytest.raises(QueryError) as caught:
            parse_query(bad)
        assert str(caught.value).startswith("Could not parse: Error parsing expression")
        assert saw in str(caught.value)


def test_queries_select_like_rally(rally: RunningRally) -> None:
    s = keyed(rally)
    tags = {
        name: create(s, rally, "Tag", {"Name": name})["Object"]["_ref"]
        for name in ("rp-bts", "rp-bts:fp:aaa", "rp-bts:fp:bbb", "flaky")
    }
    file_defect(
        s, rally, Name="one", Tags=[{"_ref": tags["rp-bts:fp:aaa"]}, {"_ref": tags["rp-bts"]}]
    )
    file_defect(s, rally, Name="two", Tags=[{"_ref": tags["rp-bts:fp:bbb"]}], Severity="Cosmetic")
    file_defect(s, rally, Name="three", Tags=[{"_ref": tags["flaky"]}], State="Closed")
    file_defect(s, rally, Name="four words here", Owner=f"/user/{rally.state.user}")

    def names(q: str, **extra: Any) -> list[str]:
        found = query(s, rally, "defect", query=q, fetch="Name", **extra)
        assert found["Errors"] == [], found["Errors"]
        return [d["Name"] for d in found["Results"]]

    either = '((Tags.Name contains "fp:aaa") OR (Tags.Name contains "fp:bbb"))'
    assert names(either) == ["one", "two"]
    assert names(f'({either} AND (Severity = "Cosmetic"))') == ["two"]
    assert names('(Tags.Name = "flaky")') == ["three"]
    assert names('(Tags.Name !contains "rp-bts")') == ["three", "four words here"]
    assert names('(State != "Closed")') == ["one", "two", "four words here"]
    assert names("(FormattedID = DE2)") == ["two"]
    assert names('(Name contains "WORDS")') == ["four words here"]  # case-insensitive
    assert names("(Owner = null)") == ["one", "two", "three"]
    assert names(f'(Owner.UserName = "{USER}")') == ["four words here"]
    assert names(f'(Tags contains "{tags["flaky"]}")') == ["three"]
    assert names(f"(ObjectID > {rally.state.defects()[1]['ObjectID']})") == [
        "three",
        "four words here",
    ]
    newest = rally.state.defects()[-1]["CreationDate"]
    assert names(f'(CreationDate < "{newest}")') == ["one", "two", "three"]
    assert names(f'(Project = "{rally.api}/project/{rally.state.project}")', order="Name desc") == [
        "two",
        "three",
        "one",
        "four words here",
    ]
    errors = query(s, rally, "defect", query="(Tags.Name contains fp:aaa OR (Name = x))")["Errors"]
    assert errors == [
        'Could not parse: Error parsing expression -- expected ")" but saw "OR" instead.'
    ]
    unknown = query(s, rally, "defect", query="(Label = x)")
    assert unknown["Errors"] == [
        'Could not parse: Could not find attribute "Label" on type Defect'
        ' in the query segment "Label"'
    ]
    assert unknown["Results"] == [] and unknown["TotalResultCount"] == 0
    tags_found = query(s, rally, "tag", query='(Name = "flaky")', fetch="Name")["Results"]
    assert [t["_ref"] for t in tags_found] == [tags["flaky"]]


def test_paging(rally: RunningRally) -> None:
    s = keyed(rally)
    for n in range(25):
        rally.state.file(Name=f"bug {n:02d}", Tags=["rp-bts"] if n % 2 else [])
    assert rally.state.tags() == ["rp-bts"]
    assert query(s, rally, "defect", query='(Tags.Name = "rp-bts")')["TotalResultCount"] == 12
    first = query(s, rally, "defect", fetch="Name")
    assert (first["TotalResultCount"], first["StartIndex"], first["PageSize"]) == (25, 1, 20)
    assert len(first["Results"]) == 20
    assert "Name" not in query(s, rally, "defect")["Results"][0]  # no fetch: refs only
    second = query(s, rally, "defect", fetch="Name", start=21, pagesize=20)
    assert [d["Name"] for d in second["Results"]] == [f"bug {n}" for n in range(20, 25)]
    small = query(s, rally, "defect", fetch="Name", start=3, pagesize=2, order="Name desc")
    assert [d["Name"] for d in small["Results"]] == ["bug 22", "bug 21"]
    big = query(s, rally, "defect", pagesize=5000)
    assert big["PageSize"] == 2000 and big["Warnings"] and len(big["Results"]) == 25
    assert query(s, rally, "defect", start=0)["Errors"]


# -- tags, attachments, discussion ---------------------------------------------------------------


def test_tags(rally: RunningRally) -> None:
    s = keyed(rally)
    tag = create(s, rally, "Tag", {"Name": "rp-bts"})
    assert tag["Errors"] == [] and tag["Object"]["Name"] == "rp-bts"
    again = create(s, rally, "Tag", {"Name": "RP-BTS"})
    assert again["Errors"] == ["Validation error: Tag.Name conflicts with RP-BTS"]
    assert rally.state.tags() == ["rp-bts"]
    other = create(s, rally, "Tag", {"Name": "flaky"})["Object"]["_ref"]
    defect = file_defect(s, rally, Tags=[{"_ref": tag["Object"]["_ref"]}])
    assert defect["Tags"]["Count"] == 1
    assert [t["Name"] for t in defect["Tags"]["_tagsNameArray"]] == ["rp-bts"]
    both = [{"_ref": tag["Object"]["_ref"]}, {"_ref": other}]
    s.post(defect["_ref"], json={"Defect": {"Tags": both}})
    listed = s.get(f"{defect['_ref']}/Tags", params={"fetch": "Name"}).json()["QueryResult"]
    assert [t["Name"] for t in listed["Results"]] == ["rp-bts", "flaky"]
    bad = s.post(defect["_ref"], json={"Defect": {"Tags": "rp-bts"}}).json()["OperationResult"]
    assert bad["Errors"]


def test_attachments(rally: RunningRally) -> None:
    s = keyed(rally)
    defect = file_defect(s, rally)
    data = b"cart contents\n" * 3
    content = create(s, rally, "AttachmentContent", {"Content": base64.b64encode(data).decode()})
    assert content["Errors"] == []
    attachment = {
        "Artifact": defect["_ref"],
        "Content": content["Object"]["_ref"],
        "Name": "cart.txt",
        "ContentType": "text/plain",
        "Size": len(data),
    }
    wrong = create(s, rally, "Attachment", {**attachment, "Size": len(data) + 1})
    assert "does not match the size of its content" in wrong["Errors"][0]
    done = create(s, rally, "Attachment", attachment)
    assert done["Errors"] == [] and done["Object"]["Artifact"]["_ref"] == defect["_ref"]
    (kept,) = rally.state.attachments_of(defect["FormattedID"])
    assert (kept["Name"], kept["bytes"], kept["Size"]) == ("cart.txt", data, len(data))
    listed = s.get(f"{defect['_ref']}/Attachments", params={"fetch": "Name,Size"}).json()
    assert [a["Name"] for a in listed["QueryResult"]["Results"]] == ["cart.txt"]
    read = s.get(content["Object"]["_ref"]).json()["AttachmentContent"]
    assert base64.b64decode(read["Content"]) == data
    assert s.get(defect["_ref"]).json()["Defect"]["Attachments"]["Count"] == 1
    rally.state.max_attachment_bytes = 10  # the 50 MB cap, scaled down
    over = create(s, rally, "AttachmentContent", {"Content": base64.b64encode(data).decode()})
    assert "exceeds the maximum attachment size of 10 bytes" in over["Errors"][0]
    assert create(s, rally, "AttachmentContent", {"Content": "***"})["Errors"]
    assert create(s, rally, "Attachment", {"Name": "x"})["Errors"][0].endswith("should not be null")


def test_discussion(rally: RunningRally) -> None:
    s = keyed(rally)
    defect = file_defect(s, rally)
    file_defect(s, rally, Name="another")
    # refs may be full URLs or relative ("/defect/1", "defect/1.js"), as Rally reads them
    for ref, text in (
        (defect["_ref"], "<p>seen again in run 2</p>"),
        (f"defect/{defect['ObjectID']}.js", "<p>and in run 3</p>"),
    ):
        post = create(s, rally, "ConversationPost", {"Artifact": ref, "Text": text})
        assert post["Errors"] == [] and post["Object"]["User"]["_refObjectName"] == "QA Bot"
    found = query(
        s, rally, "conversationpost", query=f'(Artifact = "{defect["_ref"]}")', fetch="Text"
    )
    assert [p["Text"] for p in found["Results"]] == [
        "<p>seen again in run 2</p>",
        "<p>and in run 3</p>",
    ]
    assert len(rally.state.posts_of(defect["ObjectID"])) == 2
    assert create(s, rally, "ConversationPost", {"Artifact": defect["_ref"]})["Errors"] == [
        "Validation error: ConversationPost.Text should not be null"
    ]


def test_type_definition_attributes_and_allowed_values(rally: RunningRally) -> None:
    s = keyed(rally)
    types = query(s, rally, "typedefinition", fetch="Name,ElementName,Creatable", pagesize=200)
    assert {"Defect", "Task"} <= {t["ElementName"] for t in types["Results"]}
    (defect,) = query(s, rally, "typedefinition", query="(Name = Defect)", fetch="Attributes")[
        "Results"
    ]
    attributes = s.get(
        defect["Attributes"]["_ref"],
        params={
            "fetch": "ElementName,Name,AttributeType,Required,Custom,AllowedValues",
            "pagesize": "200",
        },
    ).json()["QueryResult"]["Results"]
    by_name = {a["ElementName"]: a for a in attributes}
    assert by_name["Severity"]["AttributeType"] == "RATING"
    assert by_name["State"]["AttributeType"] == "STATE"
    assert by_name["Owner"]["AttributeType"] == "OBJECT"
    assert by_name["Name"]["Required"] is True
    assert by_name["c_Component"]["Custom"] is True
    allowed = s.get(
        by_name["c_Component"]["AllowedValues"]["_ref"], params={"fetch": "StringValue"}
    ).json()["QueryResult"]["Results"]
    assert [v["StringValue"] for v in allowed] == ["Checkout", "Cart", "Search"]
    severity = s.get(by_name["Severity"]["AllowedValues"]["_ref"], params={"fetch": "true"})
    assert "Major Problem" in [v["StringValue"] for v in severity.json()["QueryResult"]["Results"]]
    assert by_name["FoundInBuild"]["AllowedValues"]["Count"] == 0


# -- faults and instrumentation ------------------------------------------------------------------


def test_faults(rally: RunningRally) -> None:
    s = keyed(rally)
    rally.state.throttle(retry_after="7")
    throttled = s.get(f"{rally.api}/user")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    rally.state.unavailable()
    assert s.get(f"{rally.api}/user").status_code == 503
    assert s.get(f"{rally.api}/user").status_code == 200
    rally.state.drop_write(2)
    file_defect(s, rally, Name="answered")
    with pytest.raises(requests.ConnectionError):
        s.post(f"{rally.api}/defect/create", json={"Defect": {"Name": "done, unanswered"}})
    assert [d["Name"] for d in rally.state.defects()] == ["answered", "done, unanswered"]
    rally.state.outage = True
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rally.api}/user", headers={"ZSESSIONID": API_KEY})
    rally.state.outage = False
    rally.state.latency = 0.05
    assert s.get(f"{rally.api}/user").elapsed.total_seconds() >= 0.05


def test_requests_are_recorded_without_secrets(rally: RunningRally) -> None:
    s = basic()
    token = s.get(f"{rally.api}/security/authorize").json()["OperationResult"]["SecurityToken"]
    create(s, rally, "Defect", {"Name": "x"}, key=token)
    keyed(rally).get(f"{rally.api}/defect", params={"query": "(State = Open)"})
    _, created, queried = rally.state.requests
    assert (created.method, created.path) == ("POST", f"{API}/defect/create")
    assert created.body == {"Defect": {"Name": "x"}}
    assert created.query == {"key": ["<redacted>"]}
    assert created.headers["Authorization"] == "<redacted>"
    assert queried.headers["ZSESSIONID"] == "<redacted>"
    assert queried.query == {"query": ["(State = Open)"]}
    assert token not in repr(rally.state.requests)
    assert rally.state.count("POST defect/create") == 1
    assert rally.state.count("GET security/authorize") == 1
    assert rally.state.count("GET defect") == 1


def test_integration_toml_and_login_env(
    rally: RunningRally, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = rally.login_env(monkeypatch)
    assert env == {"RALLY_API_KEY": API_KEY, "RALLY_USER": USER, "RALLY_PASSWORD": PASSWORD}
    (block,) = tomllib.loads(rally.integration_toml())["integrations"]
    assert block == {
        "kind": "rally",
        "name": "Shop defects",
        "url": rally.url,
        "workspace": "Shop WS",
        "project_key": "Shop",
        "auth": "api-key",
        "api_key": "${RALLY_API_KEY}",
    }
    (basic_block,) = tomllib.loads(
        rally.integration_toml("basic", project_key='"Archive"', severity='"Cosmetic"')
    )["integrations"]
    assert (basic_block["username"], basic_block["password"]) == (
        "${RALLY_USER}",
        "${RALLY_PASSWORD}",
    )
    assert (basic_block["project_key"], basic_block["severity"]) == ("Archive", "Cosmetic")
    assert "api_key" not in basic_block

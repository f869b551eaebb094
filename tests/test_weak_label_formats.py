"""Readers, writers and rasterisers of the raw VOC weak-label formats (docs/datasets.md §3)."""
import json
import os
import zipfile

import numpy as np
import pytest

from detectron2.structures import BoxMode
from wss_d2.data.datasets.pascal_voc import VOC_CLASSES
from wss_d2.data.weak_labels import (
    boxes_from_label_map,
    drop_points_outside,
    load_image_tags,
    load_whats_the_point,
    rasterize_boxes,
    rasterize_points,
    rasterize_scribbles,
    read_scribblesup_xml,
    read_voc_xml,
    tags_from_label_map,
    voc_boxes_to_annotations,
    write_image_tags,
    write_voc_xml,
)


# --------------------------------------------------------------------------- VOC XML boxes
def voc_xml(objects, width=64, height=48, image_id="2007_000032"):
    """A VOC Annotations XML as in the release; objects: (name, xmin, ymin, xmax, ymax, difficult, parts)."""
    blocks = []
    for name, x0, y0, x1, y1, difficult, parts in objects:
        part_xml = "".join(
            f"<part><name>{p}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x0 + 2}</xmax><ymax>{y0 + 2}</ymax></bndbox></part>"
            for p in parts
        )
        blocks.append(
            f"<object><name>{name}</name><pose>Frontal</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>{part_xml}</object>"
        )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
        "<source><database>The VOC2007 Database</database></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>1</segmented>{''.join(blocks)}</annotation>"
    )


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_read_voc_xml_boxes_difficult_and_parts(tmp_path):
    xml_file = _write(tmp_path / "2007_000032.xml", voc_xml([
        ("aeroplane", 10, 5, 40, 30, 0, ()),
        ("aeroplane", 2, 2, 6, 8, 1, ()),
        ("person", 20, 10, 30, 47, 0, ("head", "hand")),
    ]))
    parsed = read_voc_xml(xml_file, VOC_CLASSES)
    assert (parsed["width"], parsed["height"]) == (64, 48)
    assert [o["name"] for o in parsed["objects"]] == ["aeroplane", "aeroplane", "person"]  # no part names
    assert [o["category_id"] for o in parsed["objects"]] == [1, 1, 15]
    assert [o["difficult"] for o in parsed["objects"]] == [False, True, False]
    # detectron2's conversion: 1-based inclusive -> [xmin - 1, ymin - 1, xmax, ymax]
    assert parsed["objects"][0]["bbox"] == [9.0, 4.0, 40.0, 30.0]

    annotations = voc_boxes_to_annotations(parsed)
    assert annotations[2] == {
        "bbox": [19.0, 9.0, 30.0, 47.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 15
    }
    assert len(annotations) == 3
    assert [a["category_id"] for a in voc_boxes_to_annotations(parsed, include_difficult=False)] == [1, 15]

    # the box covers the 1-based pixels xmin..xmax, i.e. 0-based columns xmin-1..xmax-1
    raster = rasterize_boxes(annotations[:1], 48, 64)
    rows, cols = np.nonzero(raster == 1)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (9, 39, 4, 29)


def test_read_voc_xml_errors_name_the_file(tmp_path):
    unknown = _write(tmp_path / "unknown.xml", voc_xml([("zebra", 1, 1, 5, 5, 0, ())]))
    with pytest.raises(ValueError, match=r"unknown.xml: unknown class name 'zebra'"):
        read_voc_xml(unknown, VOC_CLASSES)
    broken = _write(tmp_path / "broken.xml", voc_xml([("cat", 1, 1, 5, 5, 0, ())])[:-20])
    with pytest.raises(ValueError, match=r"Malformed VOC annotation .*broken.xml"):
        read_voc_xml(broken, VOC_CLASSES)
    no_box_xml = voc_xml([("cat", 1, 1, 5, 5, 0, ())]).replace("<xmax>5</xmax>", "")
    no_box = _write(tmp_path / "nobox.xml", no_box_xml)
    with pytest.raises(ValueError, match=r"nobox.xml: missing <bndbox/xmax> in object 0 \(cat\)"):
        read_voc_xml(no_box, VOC_CLASSES)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        read_voc_xml(str(tmp_path / "missing.xml"), VOC_CLASSES)


def test_write_voc_xml_round_trip(tmp_path):
    objects = [("cat", [0.0, 3.0, 7.0, 9.0]), ("tvmonitor", [2.0, 1.0, 5.0, 4.0])]
    xml_file = write_voc_xml(str(tmp_path / "Annotations" / "syn_000001.xml"), "syn_000001", 10, 12, objects)
    parsed = read_voc_xml(xml_file, VOC_CLASSES)
    assert (parsed["width"], parsed["height"]) == (10, 12)
    assert [(o["name"], o["bbox"], o["category_id"]) for o in parsed["objects"]] == [
        ("cat", [0.0, 3.0, 7.0, 9.0], 8), ("tvmonitor", [2.0, 1.0, 5.0, 4.0], 20),
    ]


# ---------------------------------------------------------------------- boxes from label maps
def test_boxes_from_label_map_8_connected_components():
    label = np.zeros((10, 12), np.uint8)
    label[1:3, 3:6] = 7          # class 7, rows 1..2, columns 3..5
    label[3, 6] = 7              # touches the block only diagonally: same 8-connected region
    label[7:9, 0:2] = 7          # second region of class 7
    label[5:10, 8:12] = 2        # class 2
    label[0, 11] = 2             # one-pixel region of class 2
    label[4, 0:3] = 255          # ignore is never a box
    boxes = boxes_from_label_map(label)
    assert boxes == [
        (2, [11.0, 0.0, 12.0, 1.0]),
        (2, [8.0, 5.0, 12.0, 10.0]),
        (7, [3.0, 1.0, 7.0, 4.0]),
        (7, [0.0, 7.0, 2.0, 9.0]),
    ]
    assert (2, [11.0, 0.0, 12.0, 1.0]) not in boxes_from_label_map(label, min_area=2)
    # background_class=None: class 0 gets boxes too (datasets without a background class)
    no_background = boxes_from_label_map(np.zeros((3, 4), np.uint8), background_class=None)
    assert no_background == [(0, [0.0, 0.0, 4.0, 3.0])]


def test_boxes_from_label_map_rasterize_round_trip():
    label = np.zeros((12, 16), np.uint8)
    label[2:6, 1:5] = 3
    label[7:11, 6:15] = 9
    annotations = [
        {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c}
        for c, box in boxes_from_label_map(label)
    ]
    np.testing.assert_array_equal(rasterize_boxes(annotations, 12, 16), label)


def test_rasterize_boxes_small_on_top_and_overlap_ignore():
    small = {"bbox": [2, 2, 4, 4], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2}
    large = {"bbox": [0, 0, 6, 5], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1}
    same_class = {"bbox": [1, 0, 3, 1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1}
    label = rasterize_boxes([small, large], 6, 8)  # the large box comes later but is drawn first
    expected = np.zeros((6, 8), np.uint8)
    expected[0:5, 0:6] = 1
    expected[2:4, 2:4] = 2
    np.testing.assert_array_equal(label, expected)

    ignored = rasterize_boxes([small, large, same_class], 6, 8, overlap_ignore=True)
    expected[2:4, 2:4] = 255  # covered by classes 1 and 2; the class-1 overlap stays 1
    np.testing.assert_array_equal(ignored, expected)

    # other box modes are converted; fractional boxes cover every pixel they touch; clipping
    xywh = {"bbox": [5.5, 4.2, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 4}
    label = rasterize_boxes([xywh], 6, 8, background_class=0)
    covered = np.argwhere(label == 4)  # rows 4.2..14.2 and columns 5.5..15.5, clipped to 6x8
    assert covered.min(0).tolist() == [4, 5] and covered.max(0).tolist() == [5, 7]
    with pytest.raises(ValueError, match="category_id 255"):
        rasterize_boxes([{**small, "category_id": 255}], 6, 8)


# --------------------------------------------------------------------------------- scribbles
def scribblesup_xml(polygons, width, height, image_id="2007_000032"):
    """A ScribbleSup XML: polygons = [(tag, [(x, y), ...]), ...] (size after the polygons, as released)."""
    body = "".join(
        "<polygon><tag>%s</tag>%s</polygon>"
        % (tag, "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in points))
        for tag, points in polygons
    )
    return (
        f"<annotation><filename>{image_id}.jpg</filename><folder>VOC2012</folder>{body}"
        f"<size><width>{width}</width><height>{height}</height></size></annotation>"
    )


def test_scribble_xml_from_zip_and_raster(tmp_path):
    zip_file = tmp_path / "voc_scribbles.zip"
    polygons = [
        ("plane", [(2, 5), (12, 5)]),        # horizontal stroke
        ("background", [(16, 1), (16, 9)]),  # background is scribbled explicitly: value 0
        ("person", [(6, 8)]),                # one-point scribble: just the vertex disc
    ]
    with zipfile.ZipFile(zip_file, "w") as archive:
        archive.writestr("2007_000032.xml", scribblesup_xml(polygons, 20, 11))
    with zipfile.ZipFile(zip_file) as archive, archive.open("2007_000032.xml") as f:
        width, height, scribbles = read_scribblesup_xml(f)
    assert (width, height) == (20, 11)
    assert [value for value, _ in scribbles] == [1, 0, 15]
    np.testing.assert_array_equal(scribbles[0][1], [[2, 5], [12, 5]])
    assert scribbles[2][1].shape == (1, 2)

    label = rasterize_scribbles(scribbles, height, width, unlabeled_value=21)
    expected = np.full((11, 20), 21, np.uint8)
    expected[4:7, 1:14] = 1    # width 3 (rows 4..6); vertex discs reach one pixel past the ends
    expected[0:11, 15:18] = 0  # vertical background stroke, clipped at the borders
    expected[7:10, 5:8] = 15   # 3x3 disc around (x=6, y=8), drawn last
    np.testing.assert_array_equal(label, expected)

    rloss_style = rasterize_scribbles(scribbles, height, width, unlabeled_value=255)
    assert set(np.unique(rloss_style)) == {0, 1, 15, 255}
    assert np.array_equal(rloss_style == 255, label == 21)


def test_scribble_diagonal_stroke_is_connected_and_thin():
    label = rasterize_scribbles([(3, np.array([[1, 1], [9, 9]]))], 12, 12, unlabeled_value=21)
    rows, cols = np.nonzero(label == 3)
    assert np.abs(rows - cols).max() == 2  # 1-px diagonal dilated by the 3x3 disc
    assert all(label[i, i] == 3 for i in range(0, 11))
    with pytest.raises(ValueError, match="odd"):
        rasterize_scribbles([], 5, 5, unlabeled_value=21, thickness=4)


def test_scribble_errors_name_file_and_tag(tmp_path):
    bad_tag = _write(tmp_path / "2007_000039.xml", scribblesup_xml([("aeroplane", [(1, 1)])], 5, 5))
    with pytest.raises(ValueError, match=r"2007_000039.xml: polygon 0 has unknown tag 'aeroplane'"):
        read_scribblesup_xml(bad_tag)
    broken = _write(tmp_path / "broken.xml", scribblesup_xml([("cat", [(1, 1)])], 5, 5)[:-15])
    with pytest.raises(ValueError, match=r"Malformed scribble file .*broken.xml"):
        read_scribblesup_xml(broken)
    no_y = _write(tmp_path / "noy.xml", scribblesup_xml([("cat", [(1, 1)])], 5, 5).replace("<Y>1</Y>", ""))
    with pytest.raises(ValueError, match=r"noy.xml: missing or non-numeric <Y> in polygon 0 \(cat\)"):
        read_scribblesup_xml(no_y)
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        read_scribblesup_xml(str(tmp_path / "nope.xml"))


# ------------------------------------------------------------------------------------ points
def _points_files(tmp_path):
    foreground = {
        "2007_000032": [
            {"x": 3.5, "y": 2.49, "rank": 1, "cls": 1},
            {"x": 704.2, "y": 10.0, "rank": 1, "cls": 15},  # outside, as in the real file
            {"x": 9, "y": 0, "rank": 2, "cls": 1},          # int coordinates occur too
        ],
        "2007_000039": [{"x": 1.0, "y": 1.0, "rank": 1, "cls": 20}],
    }
    background = {
        "2007_000032": [{"x": 3.6, "y": 2.0, "cls": 0}, {"x": -0.6, "y": 5.0, "cls": 0}],
        "2007_000039": [],
    }
    fg_file = tmp_path / "voc_whats_the_point.json"
    bg_file = tmp_path / "voc_whats_the_point_bg_from_scribbles.json"
    fg_file.write_text(json.dumps(foreground))
    bg_file.write_text(json.dumps(background))
    return str(fg_file), str(bg_file)


def test_whats_the_point_merge_drop_and_raster(tmp_path):
    points = load_whats_the_point(_points_files(tmp_path))
    assert sorted(points) == ["2007_000032", "2007_000039"]
    np.testing.assert_array_equal(points["2007_000032"], [
        [3.5, 2.49, 1], [704.2, 10.0, 15], [9, 0, 1], [3.6, 2.0, 0], [-0.6, 5.0, 0],
    ])  # foreground file first, then background
    assert points["2007_000039"].shape == (1, 3)

    kept, dropped = drop_points_outside(points["2007_000032"], 6, 10)
    assert dropped == 2  # x=704.2 and x=-0.6 (pixel -1); x=9 is the last column, kept
    np.testing.assert_array_equal(kept[:, 2], [1, 1, 0])

    single = rasterize_points(points["2007_000032"], 6, 10, unlabeled_value=21, radius=0)
    expected = np.full((6, 10), 21, np.uint8)
    expected[2, 4] = 0  # (3.5, 2.49) -> column 4, row 2; then (3.6, 2.0) -> same pixel, background last
    expected[0, 9] = 1
    np.testing.assert_array_equal(single, expected)

    discs = rasterize_points(points["2007_000032"], 6, 10, unlabeled_value=255, radius=1)
    expected = np.full((6, 10), 255, np.uint8)
    expected[0:2, 8:10] = 1  # disc at the corner is cut off; no pixel is clipped onto column 0
    expected[1:4, 3:6] = 0
    np.testing.assert_array_equal(discs, expected)


def test_points_errors_name_file_and_image(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"2007_000032": [{"x": 1.0, "cls": 3}]}))
    with pytest.raises(ValueError, match=r"bad.json: point 0 of image 2007_000032 has no valid 'y'"):
        load_whats_the_point([str(bad)])
    bad.write_text(json.dumps({"2007_000033": [{"x": 1.0, "y": 2.0, "cls": 2.5}]}))
    with pytest.raises(ValueError, match=r"bad.json: point 0 of image 2007_000033 has class 2.5"):
        load_whats_the_point(str(bad))
    bad.write_text(json.dumps({"2007_000039": {"x": 1}}))
    with pytest.raises(ValueError, match=r"bad.json: the points of image 2007_000039 are not a list"):
        load_whats_the_point(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a dict"):
        load_whats_the_point(str(bad))
    bad.write_text("{")
    with pytest.raises(ValueError, match="Malformed point file .*bad.json"):
        load_whats_the_point(str(bad))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_whats_the_point(str(tmp_path / "nope.json"))


# -------------------------------------------------------------------------------------- tags
TAGS = {"2007_000032": [1, 15], "2007_000033": [1], "2007_000039": [20], "2007_000063": []}


@pytest.mark.parametrize("int_keys", [False, True])
def test_write_image_tags_round_trip(tmp_path, int_keys):
    npy_file = str(tmp_path / "cls_labels.npy")
    write_image_tags(npy_file, TAGS, 20, int_keys=int_keys)
    content = np.load(npy_file, allow_pickle=True)
    assert content.shape == () and content.dtype == object
    table = content.item()
    key = np.int32(2007000032) if int_keys else "2007_000032"
    assert all(type(k) is (np.int32 if int_keys else str) for k in table)
    vector = table[key]
    assert vector.dtype == np.float32 and vector.shape == (20,)
    assert np.flatnonzero(vector).tolist() == [0, 14]  # aeroplane + person (docs/datasets.md §3.1)
    assert load_image_tags(npy_file, 20) == TAGS


def test_write_image_tags_errors(tmp_path):
    with pytest.raises(ValueError, match=r"2007_000032 hold label values \[0, 21\]"):
        write_image_tags(str(tmp_path / "t.npy"), {"2007_000032": [0, 3, 21]}, 20)
    with pytest.raises(ValueError, match="'syn_000001' is not a VOC id"):
        write_image_tags(str(tmp_path / "t.npy"), {"syn_000001": [1]}, 20, int_keys=True)


def test_tags_from_label_map():
    label = np.array([[0, 0, 3], [255, 15, 3]], np.uint8)
    assert tags_from_label_map(label, 21) == [3, 15]
    assert tags_from_label_map(label, 21, background_class=None) == [0, 3, 15]
    assert tags_from_label_map(np.full((2, 2), 255, np.uint8), 21) == []
    with pytest.raises(ValueError, match=r"values \[30\]"):
        tags_from_label_map(np.array([[30, 1]], np.uint8), 21)


def test_write_label_png_round_trip_and_range(tmp_path):
    from wss_d2.data.readers import read_label_map
    from wss_d2.data.writers import write_label_png

    label = np.arange(12 * 7).reshape(12, 7) % 256
    path = write_label_png(label, str(tmp_path / "l.png"))
    assert np.array_equal(read_label_map(path), label) and os.listdir(tmp_path) == ["l.png"]
    with pytest.raises(ValueError, match="bad.png: label values 0..300"):
        write_label_png(np.array([[0, 300]]), str(tmp_path / "bad.png"))

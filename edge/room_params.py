"""Thresholds of the room analysis (`room.RoomModel`), the same for every room."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoomParams:
    # Activity: person-sized motion.
    act_motion: float = 0.002  # share of pixels moving that counts as a person moving
    enter_s: float = 0.2  # activity this long (two frames at 5 fps) makes an empty room occupied
    act_map_tau_s: float = 1.0  # the location map forgets older motion this fast (while moving)
    # Leaving through a door.
    leave_quiet_s: float = 0.5  # no activity this long after the track ended in a door zone
    leave_window_s: float = 3.0  # ... and at most this long after (later: still there)
    door_share: float = 0.12  # share of the recent motion that must lie in a door zone
    leave_fg_max: float = 0.12  # where the track ended must be this close to the background
    leave_motion: float = 0.01  # ... and someone walked there: this much motion in its last second
    # Where the person is.
    zone_share: float = 0.5  # share of where the person rests inside bed/chair for in_bed/in_chair
    place_memory_s: float = 2.0  # where the person rests: from their motion in this last time
    zone_dwell_s: float = 2.0  # a new place must hold this long before the state changes
    no_motion_s: float = 900.0  # present without any motion this long: no_motion
    no_motion_in_bed: bool = False  # whether a still person in bed also becomes no_motion
    startup_empty_s: float = 60.0  # after a start with no sign of anybody: empty (low confidence)
    # Motion events.
    motion_on: float = 0.005  # share of pixels moving that starts a motion event
    motion_quiet_s: float = 10.0  # quiet this long ends a motion event
    # Possible fall.
    fall_window_s: float = 1.6  # the drop happens within this time
    fall_track_motion: float = 0.003  # frames with less motion do not enter the fall track
    fall_drop_min: float = 0.15  # the top of the moving region drops at least this (image heights)
    fall_drop_rel: float = 0.45  # ... and at least this share of the region's height before
    fall_min_height: float = 0.2  # height of the region before the drop is taken as at least this
    fall_peak: float = 0.02  # with at least this share of pixels moving at the peak
    fall_settle_motion: float = 0.01  # below this the person has come to rest
    fall_still_s: float = 1.0  # ... for this long
    fall_settle_max_s: float = 10.0  # no rest within this time after the drop: not a fall
    fall_fg_min: float = 0.2  # where the person came to rest differs from the background this much
    fall_body_rel: float = 0.15  # ... and is at least this share of the region before the drop
    fall_band_rows: int = 3  # ... judged on its densest band of this many grid rows
    fall_bed_chair_max: float = 0.5  # at most this share of that place in bed/chair zones
    fall_floor_min: float = 0.3  # at least this share in floor zones (if the room has any)
    fall_body_min: float = 0.25  # where light alone explains the change, it is not the body ...
    # ... unless that leaves less than this share of the place (then the place is judged whole)
    fall_upright_recent_s: float = 5.0  # the person's upright size: from this long before the drop
    fall_gap_max_s: float = 0.55  # the drop's moving frames are at most this far apart
    fall_onset_speed: float = 0.12  # the descent starts where the top sinks at least this fast (/s)
    fall_fast_speed: float = 0.3  # ... and the fall itself where it sinks this fast (/s)
    # At rest the top must still be this share of the height below where it was (the drop
    # itself needed fall_drop_rel): a rise back up caught half way stops well above it.
    fall_rest_rel: float = 0.35
    fall_low_motion: float = 0.01  # the drop's lowest frame moves at least this much
    fall_back_up: float = 0.4  # before resting, the top back within this share of the drop: no fall
    fall_rise: float = 0.5  # getting up: the moving region's top rises this share of its height
    fall_rise_motion: float = 0.01  # ... with at least this much motion
    fall_confirm_s: float = 30.0  # not got up this long after coming to rest: possible fall
    fall_track_margin: float = 0.1  # after the drop, motion this far beside it is someone else
    # Lying low without a seen drop (a slow slide down, a drop the camera missed).
    floor_upright_s: float = 30.0  # the person's own upright size: from their motion this long
    floor_low_rel: float = 0.6  # at rest, at most this share of that height (and ended low)
    floor_descent_s: float = 8.0  # a fast descent remembered this long ...
    floor_descent_gap_s: float = 2.5  # ... ending this close to the rest makes lying low a fall
    floor_area_rel: float = 0.3  # ... and its last movements at least this share of its area

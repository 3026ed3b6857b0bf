-- One database per service that stores anything.
CREATE DATABASE casemesh_tickets;
CREATE DATABASE casemesh_notifier;
CREATE DATABASE casemesh_evidence;
CREATE DATABASE casemesh_appeals;
CREATE DATABASE casemesh_reports;
CREATE DATABASE casemesh_casequeue;
CREATE DATABASE casemesh_helpcenter;
